"""Suite -> Ray Tune trials -> run directory.

The driver owns the run directory. Trials send their rows back through Tune's reporting (so
they work on any node of a cluster, shared filesystem or not); a callback on the driver writes
each finished trial atomically to trials/<trial_id>.json. Those files are the unit of resume:
a rerun with --resume runs only the trials that have none.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from halbench import results
from halbench.errors import UserError
from halbench.suite import Suite, TrialSpec, load_suite, suite_diff

FINAL_KEY = "halbench_final"  # the metric that carries a finished trial's rows, as JSON


@dataclass
class RunSummary:
    out_dir: Path
    total: int
    skipped: int  # already finished before this invocation (resume)
    statuses: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False


def default_output(suite: Suite, base: Path = Path("reports")) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return base / suite.name / stamp


def prepare_run_dir(suite: Suite, suite_path: Path, out_dir: Path, *, resume: bool) -> None:
    """Create (or, with resume, check) the run directory and its provenance files."""
    stored = out_dir / "suite.yaml"
    if resume:
        if not stored.exists():
            raise UserError(f"{out_dir}: no suite.yaml here, nothing to resume (run without --resume)")
        old = load_suite(stored)
        if old.hash() != suite.hash():
            changed = suite_diff(old.science(), suite.science())
            raise UserError(
                f"{suite_path}: differs from the suite of the run in {out_dir} "
                f"(changed: {', '.join(changed[:6])}{' ...' if len(changed) > 6 else ''}); "
                "resume with the same suite, or start a new output directory"
            )
    elif (out_dir / "trials").exists() and any((out_dir / "trials").glob("*.json")):
        raise UserError(f"{out_dir}: already holds results; pass --resume to finish it, or choose another --output")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "trials").mkdir(exist_ok=True)
    if not resume:
        shutil.copyfile(suite_path, stored)


def write_env(out_dir: Path, suite: Suite, extra: dict[str, Any]) -> None:
    env = results.environment()
    env.update(suite=suite.name, suite_hash=suite.hash(), **extra)
    results.write_json_atomic(out_dir / "env.json", env)


def finished_trials(out_dir: Path) -> dict[str, dict[str, Any]]:
    """trial_id -> {"row": ..., "epochs": [...]} for every trial with a result file."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted((out_dir / "trials").glob("*.json")):
        try:
            blob = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # an atomic write never leaves this; a hand-edited file is rerun
        out[blob["row"]["trial_id"]] = blob
    return out


def save_trial(out_dir: Path, row: dict[str, Any], epochs: list[dict[str, Any]]) -> None:
    results.write_json_atomic(out_dir / "trials" / f"{row['trial_id']}.json", {"row": row, "epochs": epochs})


def collect(out_dir: Path, suite: Suite) -> dict[str, int]:
    """trials/*.json -> trials.parquet + epochs.parquet, in grid order. Returns status counts."""
    done = finished_trials(out_dir)
    order = {spec.trial_id: i for i, spec in enumerate(suite.trials())}
    ids = sorted(done, key=lambda t: (order.get(t, len(order)), t))
    rows = [done[t]["row"] for t in ids]
    epochs = [e for t in ids for e in done[t]["epochs"]]
    results.write_parquet_atomic(results.frame(rows, results.TRIAL_SCHEMA), out_dir / "trials.parquet")
    results.write_parquet_atomic(results.frame(epochs, results.EPOCH_SCHEMA), out_dir / "epochs.parquet")
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def failed_row(suite: Suite, spec: TrialSpec, status: str, error: str) -> dict[str, Any]:
    """A row for a trial that died outside run_trial (a lost worker, a crashed actor)."""
    return {
        "trial_id": spec.trial_id,
        "suite": suite.name,
        "suite_hash": suite.hash(),
        "dataset": spec.dataset.name,
        "model": suite.model.backbone,
        "loss": spec.loss.display,
        "loss_name": spec.loss.name,
        "loss_params": json.dumps(spec.loss.params, sort_keys=True),
        "batch_size": spec.batch_size,
        "embedding_dim": spec.embedding_dim,
        "seed": spec.seed,
        "epochs": suite.train.epochs,
        "epochs_done": 0,
        "status": status,
        "error": error,
    }


def _trainable(config: dict[str, Any], suite_json: dict[str, Any]) -> None:
    """The Tune function trainable: one grid point."""
    from ray import tune

    from halbench.plugins import load_plugins
    from halbench.trial import run_trial

    load_plugins()  # the worker process may not have imported the user's plugin modules yet
    suite = Suite.model_validate(suite_json)
    spec = TrialSpec.model_validate(config["spec"])

    def report_epoch(epoch_row: dict[str, Any]) -> None:
        tune.report({k: v for k, v in epoch_row.items() if isinstance(v, int | float)})

    result = run_trial(suite, spec, report=report_epoch)
    tune.report({FINAL_KEY: json.dumps({"row": result.row, "epochs": result.epochs}, default=str)})


class _Progress:
    """One terminal line per finished trial: done/running/failed, elapsed, time left."""

    def __init__(self, total: int, already: int, stream=sys.stderr) -> None:
        self.total, self.done, self.failed, self.running = total, already, 0, 0
        self.start = time.monotonic()
        self.new_done = 0
        self.stream = stream

    def started(self) -> None:
        self.running += 1

    def finished(self, status: str) -> None:
        self.running = max(0, self.running - 1)
        self.done += 1
        self.new_done += 1
        self.failed += status != "ok"
        elapsed = time.monotonic() - self.start
        left = (self.total - self.done) * elapsed / self.new_done
        print(
            f"[halbench] {self.done}/{self.total} trials done ({self.failed} failed, "
            f"{self.running} running), elapsed {_fmt(elapsed)}, about {_fmt(left)} left",
            file=self.stream,
            flush=True,
        )


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _make_callback(out_dir: Path, suite: Suite, specs: dict[str, TrialSpec], progress: _Progress):
    from ray.tune import Callback

    class ResultWriter(Callback):
        """Writes each finished trial on the driver, the moment Tune hands us its rows."""

        def on_trial_start(self, iteration, trials, trial, **info):  # noqa: ANN001
            progress.started()

        def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001
            if FINAL_KEY in result:
                blob = json.loads(result[FINAL_KEY])
                save_trial(out_dir, blob["row"], blob["epochs"])
                progress.finished(blob["row"]["status"])

        def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ANN001
            spec = specs[trial.config["spec"]["trial_id"]]
            if (out_dir / "trials" / f"{spec.trial_id}.json").exists():
                return
            msg = str(getattr(trial, "error_msg", None) or "trial process failed").strip()
            msg = msg.splitlines()[-1] if msg else "trial process failed"
            save_trial(out_dir, failed_row(suite, spec, "error", f"RayTrialError: {msg}"), [])
            progress.finished("error")

    return ResultWriter()


def _init_ray(address: str | None, num_cpus: int | None, num_gpus: int | None, dashboard: bool) -> str | None:
    """Connect to a cluster (address) or start a local Ray. Returns the dashboard URL if any."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if address:
        ctx = ray.init(address=address, log_to_driver=False)
    else:
        # A small object store: trials exchange only metrics; /dev/shm may be small.
        ctx = ray.init(
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            include_dashboard=dashboard,
            dashboard_host="127.0.0.1",
            object_store_memory=256 * 1024**2,
            log_to_driver=False,
            configure_logging=False,
        )
    url = getattr(ctx, "dashboard_url", None)
    return f"http://{url}" if url and not url.startswith("http") else url


def run_suite(
    suite: Suite,
    suite_path: Path,
    *,
    output: Path | None = None,
    resume: bool = False,
    max_concurrent: int | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    dashboard: bool = False,
    use_ray: bool = True,
    datasets: list[str] | None = None,
    build_report: Callable[[Path], None] | None = None,
) -> RunSummary:
    out_dir = (output or default_output(suite)).resolve()
    prepare_run_dir(suite, suite_path, out_dir, resume=resume)
    specs = [s for s in suite.trials() if not datasets or s.dataset.name in datasets]
    if datasets and not specs:
        known = ", ".join(d.name for d in suite.datasets)
        raise UserError(f"--datasets {','.join(datasets)}: none of the suite's datasets ({known})")
    done = finished_trials(out_dir)
    todo = [s for s in specs if s.trial_id not in done]
    write_env(out_dir, suite, {"started_at": datetime.now(UTC).isoformat(), "address": address})
    print(f"[halbench] {suite.name}: {len(specs)} trials, {len(specs) - len(todo)} already done; "
          f"writing to {out_dir}", file=sys.stderr, flush=True)

    summary = RunSummary(out_dir=out_dir, total=len(specs), skipped=len(specs) - len(todo))
    progress = _Progress(len(specs), len(specs) - len(todo))
    try:
        if todo and use_ray:
            _run_with_ray(suite, todo, out_dir, progress, max_concurrent=max_concurrent,
                          address=address, num_cpus=num_cpus, num_gpus=num_gpus, dashboard=dashboard)
        elif todo:
            _run_in_process(suite, todo, out_dir, progress)
    except KeyboardInterrupt:
        summary.interrupted = True
    summary.statuses = collect(out_dir, suite)
    write_env(out_dir, suite, {"finished_at": datetime.now(UTC).isoformat(), "address": address,
                               "interrupted": summary.interrupted})
    finished = finished_trials(out_dir)
    summary.interrupted = summary.interrupted or any(s.trial_id not in finished for s in specs)
    if build_report is not None:
        build_report(out_dir)
    return summary


def _run_in_process(suite: Suite, todo: list[TrialSpec], out_dir: Path, progress: _Progress) -> None:
    from halbench.trial import run_trial

    for spec in todo:
        progress.started()
        result = run_trial(suite, spec)
        save_trial(out_dir, result.row, result.epochs)
        progress.finished(result.row["status"])


def _run_with_ray(
    suite: Suite,
    todo: list[TrialSpec],
    out_dir: Path,
    progress: _Progress,
    *,
    max_concurrent: int | None,
    address: str | None,
    num_cpus: int | None,
    num_gpus: int | None,
    dashboard: bool,
) -> None:
    import ray
    from ray import tune

    started_here = not ray.is_initialized()
    if started_here:
        url = _init_ray(address, num_cpus, num_gpus, dashboard)
        if url and (dashboard or address):
            print(f"[halbench] Ray dashboard: {url}", file=sys.stderr, flush=True)
    res = suite.resources
    gpus = 1.0 if res.exclusive_gpu and res.gpus_per_trial > 0 else res.gpus_per_trial
    resources: dict[str, float] = {"cpu": res.cpus_per_trial, "gpu": gpus}
    if res.memory_gb:
        resources["memory"] = res.memory_gb * 1024**3
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, suite_json=suite.model_dump(mode="json")), resources
    )
    specs = {s.trial_id: s for s in todo}
    tuner = tune.Tuner(
        trainable,
        param_space={"spec": tune.grid_search([s.model_dump(mode="json") for s in todo])},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=max_concurrent or res.max_concurrent,
            reuse_actors=True,
            trial_name_creator=lambda t: t.config["spec"]["trial_id"],
            trial_dirname_creator=lambda t: t.config["spec"]["trial_id"],
        ),
        run_config=tune.RunConfig(
            name=f"tune-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}",
            storage_path=str(out_dir / "ray"),
            callbacks=[_make_callback(out_dir, suite, specs, progress)],
            # Retry infrastructure failures (a lost node); run_trial itself never raises for
            # OOM/NaN/exceptions, so a deterministic failure is a row, not a retry loop.
            failure_config=tune.FailureConfig(max_failures=2),
            verbose=0,
        ),
    )
    previous = signal.getsignal(signal.SIGINT)
    try:
        tuner.fit()
    finally:
        signal.signal(signal.SIGINT, previous)
        if started_here:
            ray.shutdown()
