"""`halbench run SUITE --dry-run`: what a run would cost on this machine, without running it.

The suite is validated and its datasets loaded (as a run does); the trials are listed; a few
real training steps (after a warm-up) and one k-NN evaluation of each dataset's first
configuration are timed here, and the total is extrapolated: training from the images per
second, evaluation from the seconds per embedded image. Nothing is written (no run directory).
The trials are the run's own plan (runner.run_plan): a tuned suite (`tune:` / `final:`) counts
budget x groups x replicates tuning trials at tune.epochs (an upper bound: the scheduler may
stop some early; with tune.budget_epochs N a group runs at most ceil(N / tune.epochs) of them
when none stops early, the last cut short at N epochs in all) and groups x replicates x
final.seeds final trials.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from halbench.errors import UserError
from halbench.run.options import RunOptions
from halbench.run.packing import packing_line
from halbench.run.plan import TUNE
from halbench.run.runner import check_data, load_dataset, run_plan
from halbench.suite import Suite, TrialSpec

WARMUP_STEPS, TIMED_STEPS = 2, 5
# The evaluation is timed on a stratified subset of at most this many images (then scaled):
# a full ResNet evaluation on a CPU would make the dry run as long as a trial. Embedding
# time is linear in the images; the k-NN search is a small part of it for a CNN.
EVAL_TRAIN_IMAGES, EVAL_TEST_IMAGES = 1024, 256
MANY_HOURS = 1000.0  # a total worth saying plainly


@dataclass(frozen=True)
class Planned:
    """Trials of one kind: how many, on which data, how long each trains."""

    phase: str  # grid | tune | final
    dataset: str
    loss: str
    batch_size: int
    epochs: int
    count: int
    validation: float | int | None = None  # tune: the part of the train split held out


@dataclass(frozen=True)
class Timing:
    """One dataset's first configuration, timed on this machine."""

    trial_id: str
    device: str
    threads: int
    images_per_s: float
    eval_s_per_image: float
    eval_images: int  # images the timed evaluation embedded (a subset of large splits)
    n_train: int
    n_test: int
    max_steps: int | None


def plan(suite: Suite, datasets: tuple[str, ...] | None = None) -> list[Planned]:
    """The run's plan (runner.run_plan), priced by kind: one entry per grid trial, and per
    group one for its tuning trials and one for its final trials."""
    tune = suite.tune
    out: dict[tuple[str, str], Planned] = {}
    for task in run_plan(suite, datasets).tasks:
        spec = task.spec
        assert spec is not None and task.epochs is not None
        key = (task.kind, task.group or task.task_id)
        if key in out:
            out[key] = dataclasses.replace(out[key], count=out[key].count + 1)
            continue
        validation = tune.validation if task.kind == TUNE and tune is not None else None
        out[key] = Planned(task.kind, spec.dataset.name, spec.loss.display, spec.batch_size,
                           task.epochs, 1, validation)  # fmt: skip
    if tune is not None and tune.budget_epochs is not None:
        # Trials start while the group has an epoch left: ceil(N / E), the last cut short.
        most = math.ceil(tune.budget_epochs / tune.epochs)
        for key, p in out.items():
            if p.phase == TUNE:
                out[key] = dataclasses.replace(p, count=min(p.count, most))
    return list(out.values())


def protocol_lines(suite: Suite, datasets: tuple[str, ...] | None = None) -> list[str]:
    """A tuned suite's protocol in words: replicates, trials per phase, the epoch budget."""
    tune, final = suite.tune, suite.final
    if tune is None:
        return []
    groups = {t.group for t in run_plan(suite, datasets).of(TUNE)}
    points = len(groups) // tune.replicates
    reps = f"{tune.replicates} replicate{'s' * (tune.replicates != 1)} x "
    cap = ""
    if tune.budget_epochs is not None:
        most = min(tune.budget, math.ceil(tune.budget_epochs / tune.epochs))
        cap = (
            f"; tune.budget_epochs {tune.budget_epochs}: a group's tuning trains that many "
            f"epochs at most, its last trial cut short ({most} trials each when none stops "
            "early)"
        )
    lines = [
        f"  protocol: tune {reps}{points} group{'s' * (points != 1)} x {tune.budget} trials "
        f"x {tune.epochs} epochs = {len(groups) * tune.budget} tuning trials{cap}"
    ]
    if final is not None:
        n = len(groups) * len(final.seeds)
        lines.append(
            f"  protocol: final {reps}{points} group{'s' * (points != 1)} x "
            f"{len(final.seeds)} seeds x {final.epochs} epochs = {n} final trials"
        )
    return lines


def measure(suite: Suite, spec: TrialSpec, n_train: int, n_test: int) -> Timing:
    """Time WARMUP_STEPS + TIMED_STEPS training steps and one evaluation of `spec` here."""
    import torch

    from halbench import trial
    from halbench.probes import TrialProbe

    device = suite.train.device
    if device in ("auto", "cuda"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    ds = spec.dataset
    sub = ds.model_copy(
        update={
            "train_size": min(n_train, max(EVAL_TRAIN_IMAGES, 8 * spec.batch_size)),
            "test_size": min(n_test, EVAL_TEST_IMAGES),
        }
    )
    timed = suite.model_copy(
        update={"datasets": [sub], "train": suite.train.model_copy(update={"device": device})}
    )
    threads = torch.get_num_threads()
    # A trial gets cpus_per_trial threads (Ray sets them); time with as many as this has.
    torch.set_num_threads(max(1, min(int(suite.resources.cpus_per_trial), os.cpu_count() or 1)))
    try:
        run = trial.setup_run(timed, spec.model_copy(update={"dataset": sub}), {})
        probe = TrialProbe(enabled=False, device=run.device)
        trial.train_epoch(dataclasses.replace(run, steps=WARMUP_STEPS), spec.batch_size, probe, 1)
        _, images, seconds = trial.train_epoch(
            dataclasses.replace(run, steps=TIMED_STEPS), spec.batch_size, probe, 1
        )
        start = time.perf_counter()
        trial.evaluate_run(run, timed.eval, final=False)
        eval_s = time.perf_counter() - start
        embedded = run.splits.train_x.shape[0] + run.splits.test_x.shape[0]
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)
    return Timing(
        trial_id=spec.trial_id,
        device=device,
        threads=used,
        images_per_s=images / seconds,
        eval_s_per_image=eval_s / embedded,
        eval_images=embedded,
        n_train=n_train,
        n_test=n_test,
        max_steps=suite.train.max_steps_per_epoch,
    )


def trial_seconds(p: Planned, t: Timing, every_n_epochs: int) -> float:
    """Seconds one planned trial takes on this machine: its epochs' training and evaluations."""
    from halbench import data
    from halbench.trial.evaluation import evaluates

    n = t.n_train
    if p.validation is not None:
        n -= data.validation_count(p.validation, n)
    steps = n // p.batch_size if n >= p.batch_size else 1
    if t.max_steps is not None:
        steps = min(steps, t.max_steps)
    images = steps * min(p.batch_size, n)
    evaluations = sum(evaluates(e, p.epochs, every_n_epochs) for e in range(1, p.epochs + 1))
    # Tuning embeds the train part and the validation part: n_train images; others add the test.
    embedded = t.n_train + (0 if p.validation is not None else t.n_test)
    return p.epochs * images / t.images_per_s + evaluations * embedded * t.eval_s_per_image


def concurrency(suite: Suite, options: RunOptions, on_gpu: bool) -> tuple[int, str]:
    """Trials at once on this machine (0: a trial does not fit), and why."""
    import torch

    res = suite.resources
    cpus = options.num_cpus or os.cpu_count() or 1
    slots = math.floor(cpus / res.cpus_per_trial)
    why = f"{cpus} CPUs / {res.cpus_per_trial:g} per trial"
    if on_gpu and res.gpus_per_trial > 0:
        gpus = options.num_gpus if options.num_gpus is not None else torch.cuda.device_count()
        gpu_slots = math.floor(gpus / res.gpus_per_trial)
        if gpu_slots < slots:
            slots, why = gpu_slots, f"{gpus} GPUs / {res.gpus_per_trial:g} per trial"
    limit = options.max_concurrent or res.max_concurrent
    if limit is not None and limit < slots:
        slots, why = limit, f"max_concurrent {limit}"
    return slots, why


def dry_run(
    suite: Suite, options: RunOptions | None = None, out: Callable[[str], None] = print
) -> float:
    """Print the trials and the estimated cost of running `suite` here; returns the hours.

    Writes nothing. Raises UserError for a suite that a run would refuse before any trial
    (unknown --datasets, missing data).
    """
    options = options or RunOptions()
    wanted = options.datasets
    specs = [s for s in suite.trials() if not wanted or s.dataset.name in wanted]
    if not specs:
        known = ", ".join(d.name for d in suite.datasets)
        raise UserError(f"--datasets {','.join(wanted or ())}: none of the suite's ({known})")
    check_data(specs)
    planned = plan(suite, wanted)
    total = sum(p.count for p in planned)
    out(f"{suite.name}: {total} trials (dry run: nothing is written)")
    for line in protocol_lines(suite, wanted):
        out(line)
    for phase in dict.fromkeys(p.phase for p in planned):
        mine = [p for p in planned if p.phase == phase]
        for ds in dict.fromkeys(p.dataset for p in mine):
            counts = Counter()
            for p in mine:
                if p.dataset == ds:
                    counts[p.loss] += p.count
            epochs = sorted({p.epochs for p in mine})
            out(
                f"  {phase} {ds}: {sum(counts.values())} trials x {'/'.join(map(str, epochs))} "
                f"epochs ({', '.join(f'{loss} {n}' for loss, n in counts.items())})"
                + (" (an upper bound: no early stopping counted)" if phase == "tune" else "")
            )
    timings = _time_datasets(suite, specs, out)
    every = suite.eval.every_n_epochs
    seconds = sum(p.count * trial_seconds(p, timings[p.dataset], every) for p in planned)
    on_gpu = any(t.device == "cuda" for t in timings.values())
    _print_total(suite, options, seconds / 3600, on_gpu, out)
    return seconds / 3600


def _time_datasets(
    suite: Suite, specs: list[TrialSpec], out: Callable[[str], None]
) -> dict[str, Timing]:
    timings = {}
    for ds in dict.fromkeys(s.dataset.name for s in specs):
        spec = next(s for s in specs if s.dataset.name == ds)
        full = load_dataset(spec.dataset)
        sizes = full.train_x.shape[0], full.test_x.shape[0]
        del full
        if suite.train.device == "cuda" and not _has_cuda():
            out("  train.device is cuda but this machine has no CUDA device: timing on the CPU")
        t = measure(suite, spec, *sizes)
        timings[ds] = t
        out(
            f"  timed {t.trial_id} on {t.device} (threads: {t.threads}): {_num(t.images_per_s)} "
            f"training images/s ({TIMED_STEPS} steps after {WARMUP_STEPS} warm-up), evaluation "
            f"{_num(t.eval_s_per_image * sum(sizes))} s for {sum(sizes):,} images"
            + (f" (scaled from {t.eval_images:,})" if t.eval_images < sum(sizes) else "")
        )
    return timings


def _print_total(
    suite: Suite, options: RunOptions, hours: float, on_gpu: bool, out: Callable[[str], None]
) -> None:
    res = suite.resources
    cpu_h, gpu_h = hours * res.cpus_per_trial, hours * res.gpus_per_trial if on_gpu else 0.0
    slots, why = concurrency(suite, options, on_gpu)
    out(
        f"estimate on this machine: {_num(hours)} trial-hours = {_num(cpu_h)} CPU hours, "
        f"{_num(gpu_h)} GPU hours (trial start-up not counted)"
    )
    if slots < 1:
        out(
            f"  a trial needs {res.cpus_per_trial:g} CPUs ({why}): this machine cannot run it "
            "(a run here is refused; set resources.cpus_per_trial or --num-cpus)"
        )
        slots = 1
    wall = hours / slots
    out(f"  wall time: about {_fmt_hours(wall)} at {slots} trials at once ({why})")
    out(f"  Ray on this machine: {packing_line(suite.resources, options)}")  # gputrial hook
    if cpu_h + gpu_h >= MANY_HOURS:
        out(
            f"  this suite is {cpu_h + gpu_h:,.0f} hours of compute on this machine: "
            "run it on a GPU machine or cluster, or shrink it (train_size, epochs, grid)"
        )


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _fmt_hours(hours: float) -> str:
    if hours >= 48:
        return f"{hours / 24:,.1f} days"
    if hours >= 1:
        return f"{hours:.1f} h"
    return f"{hours * 60:.1f} min"
