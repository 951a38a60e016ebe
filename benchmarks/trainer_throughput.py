"""A trial's training step against a bare loop, host syncs per step, and torch.compile.

    PYTHONPATH=. python benchmarks/trainer_throughput.py [--loss hal --batch-size 256 ...]

Per device (the CPU always, CUDA when present):

- `trial/bare step time R`: seconds per step of halbench's epoch loop (trial.train_epoch on a
  trial built by trial.setup_run, probes off, no curve) over those of the plainest loop that
  trains the same thing: the same model, loss (its label check done once), optimizer, batch,
  precision (bf16 autocast and channels_last on CUDA with --amp) and data placement (uint8
  tensors on the device, a permutation, per-batch normalization). Epochs of the two
  alternate (`--repeats` each, the first of each dropped as warm-up) and the medians are
  compared, so that a loaded machine slows both alike. Goals: R <= 1.10 on CPU, R <= 1.15 on CUDA.
- `host syncs per step S`: trial.epoch.host_syncs_per_step (every probe interval N steps at
  most one read: goal S <= 1/N). The loss's own reads count too (losses/kernels_cosine.py reads
  one scalar per call for HAL): they are listed by op.
- `compile`: the steady step time of the trial with train.compile: true, its speedup over
  eager, and the compile time (its warm-up, warmup_s). `--no-compile` skips it.

`--only eval` runs the second part alone: the first trial of suites/quickstart.yaml and the
k-NN evaluation's time over the training epoch's (goal at most 0.4).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from halbench.probes import TrialProbe
from halbench.probes.timing import synchronize
from halbench.probes.torch_compat import HostSyncCounter, optimizer_host_tensors
from halbench.suite import TrainConfig, parse_suite
from halbench.trial import run_trial, setup_run, train_epoch
from halbench.trial.epoch import WARMUP_STEPS, host_syncs_per_step
from halbench.trial.optim import build_optimizer


def make_suite(args: argparse.Namespace, device: str, compile_: bool = False):  # noqa: ANN201
    # Full batches only; enough of them for host_syncs_per_step's 3N-step epoch.
    n = max(args.steps, 3 * args.every_n_steps) * args.batch_size
    dataset = {"name": args.dataset, "train_size": n, "test_size": 256}
    if args.dataset == "synthetic":
        dataset["params"] = {"num_classes": 10, "image_size": 28, "channels": 1}
    on_gpu = device == "cuda"
    doc = {
        "name": "throughput",
        "dataset": dataset,
        "model": {"backbone": args.model},
        "losses": [{"name": args.loss}],
        "grid": {"batch_size": [args.batch_size], "embedding_dim": [args.dim], "seed": [0]},
        "train": {
            "epochs": 1,
            "optimizer": "adamw",
            "lr": 1e-3,
            "device": device,
            "augment": False,
            "amp": args.amp and on_gpu,
            "channels_last": args.amp and on_gpu,
            "compile": compile_,
            "max_steps_per_epoch": args.steps,
        },
        "eval": {"ks": [1], "curve_subsample": 0},
        "probes": {"enabled": False, "every_n_steps": args.every_n_steps},
    }
    return parse_suite(doc, Path("<trainer_throughput>"))


class Bare:
    """The plainest loop over the trial's own data, model and loss (a fresh copy of each)."""

    def __init__(self, args: argparse.Namespace, run, train: TrainConfig) -> None:  # noqa: ANN001
        torch.manual_seed(1)
        self.model = _fresh(run.model)
        self.loss_fn = _fresh(run.loss_fn)
        self.opt = build_optimizer(train, self.model, self.loss_fn)  # the trial's optimizer
        self.x, self.y = run.splits.train_x, run.splits.train_y
        shape = (1, len(run.splits.mean), 1, 1)
        dev = run.device
        self.mean = torch.tensor(run.splits.mean, device=dev).view(shape) * 255
        self.std = torch.tensor(run.splits.std, device=dev).view(shape) * 255
        self.run, self.batch = run, args.batch_size

    def epoch(self, steps: int) -> float:
        """Seconds per step of one epoch (the device synchronized at its ends)."""
        run, b = self.run, self.batch
        self.model.train()
        perm = torch.randperm(len(self.y), device=run.device)
        synchronize(run.device)
        start = time.perf_counter()
        for i in range(steps):
            idx = perm[i * b : (i + 1) * b]
            x = (self.x[idx].float() - self.mean) / self.std
            if run.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.amp):
                emb = self.model(x)
            loss = self.loss_fn(emb.float(), self.y[idx], idx)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        synchronize(run.device)
        return (time.perf_counter() - start) / steps


def _fresh(module: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(module)


def trial_epoch(run, batch_size: int, probe: TrialProbe) -> float:  # noqa: ANN001
    """Seconds per step of one epoch of the trial's own loop (no warm-up in it)."""
    _, _, seconds = train_epoch(run, batch_size, probe, 2)
    return seconds / run.steps


def compare(args: argparse.Namespace, device: str) -> dict:
    suite = make_suite(args, device)
    spec = suite.trials()[0]
    run = setup_run(suite, spec, {})
    probe = TrialProbe(every_n_steps=args.every_n_steps, enabled=False, device=run.device)
    bare = Bare(args, run, suite.train)
    times: dict[str, list[float]] = {"trial": [], "bare": []}
    for rep in range(args.repeats + 1):  # interleaved; the first of each is warm-up
        t, b = trial_epoch(run, spec.batch_size, probe), bare.epoch(run.steps)
        if rep:
            times["trial"].append(t)
            times["bare"].append(b)
    med = {k: statistics.median(v) for k, v in times.items()}
    with HostSyncCounter(optimizer_host_tensors(run.optimizer)) as counter:
        train_epoch(dataclasses.replace(run, steps=args.every_n_steps), spec.batch_size, probe, 2)
    return {
        "device": device,
        "loss_syncs_per_call": loss_syncs(run, spec.batch_size),
        "trial_ms": med["trial"] * 1e3,
        "bare_ms": med["bare"] * 1e3,
        "ratio": med["trial"] / med["bare"],
        # each trial epoch over the bare epoch next to it: robust to a load that drifts
        "paired_ratio": statistics.median(
            t / b for t, b in zip(times["trial"], times["bare"], strict=True)
        ),
        "trial_all_ms": [t * 1e3 for t in times["trial"]],
        "bare_all_ms": [t * 1e3 for t in times["bare"]],
        "syncs_per_step": host_syncs_per_step(run, spec.batch_size, probe),
        "sync_ops_per_interval": dict(counter.counts),
    }


def loss_syncs(run, batch_size: int) -> int:  # noqa: ANN001
    """Host syncs of one call of the loss (forward and backward, as the trial calls it: its
    loss object skips host reads, KNNLoss.skip_host_reads): the loss's part of S."""
    x, y, idx = next(run.splits.batches("train", batch_size, shuffle=False, augment=False))
    emb = torch.randn(len(y), run.loss_fn.embedding_dim, device=run.device, requires_grad=True)
    with HostSyncCounter() as counter:
        run.loss_fn(emb, y, idx).backward()
    return counter.total


def compiled(args: argparse.Namespace, device: str, eager_ms: float) -> dict:
    """train.compile: true: compile time (its warm-up) and the steady step time."""
    suite = make_suite(args, device, compile_=True)
    spec = suite.trials()[0]
    run = setup_run(suite, spec, {})
    probe = TrialProbe(every_n_steps=args.every_n_steps, enabled=False, device=run.device)
    train_epoch(run, spec.batch_size, probe, 1, warmup_steps=WARMUP_STEPS)
    steps = [trial_epoch(run, spec.batch_size, probe) for _ in range(args.repeats)]
    step_ms = statistics.median(steps) * 1e3
    return {"compile_s": run.warmup_s, "step_ms": step_ms, "speedup": eager_ms / step_ms}


def eval_ratio(suite_path: Path) -> dict:
    """Evaluation time / training-epoch time of the suite's first trial, on this CPU."""
    from halbench.suite import load_suite

    suite = load_suite(suite_path)
    result = run_trial(suite, suite.trials()[0])
    if result.row["status"] != "ok":
        raise RuntimeError(f"halbench trial failed: {result.row['error']}")
    ratios = [
        e["eval_time_s"] / e["epoch_time_s"] for e in result.epochs if e["eval_time_s"] is not None
    ]
    return {"suite": str(suite_path), "trial": result.row["trial_id"], "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic", help="synthetic (28x28x1) or a name")
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--loss", default="hal")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="steps per epoch")
    parser.add_argument("--repeats", type=int, default=7, help="timed epochs of each loop")
    parser.add_argument("--every-n-steps", type=int, default=50, help="the probe interval N")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--amp", action="store_true", help="bf16 + channels_last on CUDA")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--devices", default="auto", help="cpu, cuda or auto (cpu + cuda)")
    parser.add_argument("--eval-suite", type=Path, default=Path("suites/quickstart.yaml"))
    parser.add_argument("--only", choices=["throughput", "eval"], help="run one part only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.only != "eval":
        devices = ["cpu", "cuda"] if args.devices == "auto" else [args.devices]
        for device in devices:
            if device == "cuda" and not torch.cuda.is_available():
                continue
            throughput(args, device)
    if args.only != "throughput":
        found = eval_ratio(args.eval_suite)
        ratio = statistics.median(found["ratios"])
        print(
            f"evaluation / training epoch, {found['trial']} ({args.eval_suite}): {ratio:.3f} "
            f"(per epoch {', '.join(f'{r:.3f}' for r in found['ratios'])}; goal <= 0.4)"
        )
        print(json.dumps({"benchmark": "eval_over_train", **found, "median": ratio}))


def throughput(args: argparse.Namespace, device: str) -> None:
    found = compare(args, device)
    goal = 1.10 if device == "cpu" else 1.15
    print(
        f"{device}: {args.model} + {args.loss}, batch {args.batch_size}, d={args.dim}, "
        f"{args.steps} steps/epoch, {args.threads} threads, amp {args.amp and device == 'cuda'}"
    )
    print(
        f"  trial {found['trial_ms']:.2f} ms/step, bare {found['bare_ms']:.2f} ms/step "
        f"(medians of {args.repeats} interleaved epochs)"
    )
    print(
        f"trial/bare step time {found['ratio']:.3f} ({device}; goal <= {goal}; median of the "
        f"paired epoch ratios {found['paired_ratio']:.3f})"
    )
    own = found["loss_syncs_per_call"]
    print(
        f"host syncs per step {found['syncs_per_step']:.3f} ({device}; goal <= "
        f"{1 / args.every_n_steps:.3f}; the trainer's {found['syncs_per_step'] - own:.3f}, "
        f"the loss's own code {own} per call; ops in {args.every_n_steps} steps: "
        f"{found['sync_ops_per_interval']})"
    )
    if not args.no_compile:
        try:
            comp = compiled(args, device, found["trial_ms"])
        except Exception as err:  # noqa: BLE001 - no compiler on this machine: say so
            comp = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"}
            print(f"compile ({device}): not measured, {comp['error']}")
        else:
            print(
                f"compile ({device}): speedup {comp['speedup']:.2f}x "
                f"({comp['step_ms']:.2f} ms/step), compile time {comp['compile_s']:.1f} s"
            )
        found["compile"] = comp
    print(
        json.dumps(
            {
                "benchmark": "trainer_throughput",
                "params": vars(args) | {"eval_suite": str(args.eval_suite)},
                **found,
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
