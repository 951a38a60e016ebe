"""Suite -> Ray Tune trials -> run directory.

The driver owns the run directory. Trials send their rows back through Tune's reporting (so
they work on any node of a cluster, shared filesystem or not); a callback on the driver writes
each finished trial atomically to trials/<trial_id>.json. Those files are the unit of resume:
a rerun with --resume runs only the trials that have none, and trials.parquet / epochs.parquet
are always rebuilt from all of them, in grid order, so that a resumed run's files equal those
of an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

import yaml
from pydantic import ValidationError

from halbench import exposure, placement, results
from halbench import storage as tune_storage
from halbench.errors import UserError
from halbench.suite import Suite, TrialSpec, suite_diff

FINAL_KEY = "halbench_final"  # the metric that carries a finished trial's rows, as JSON
# Ray retries a trial whose worker or node was lost; run_trial itself never raises for an
# OOM, NaN or exception, so only infrastructure failures reach this limit.
MAX_RAY_RETRIES = 2
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2  # trials exchange only metrics


class TrialOutcome(Protocol):
    row: dict[str, Any]
    epochs: list[dict[str, Any]]


# run_trial's signature (halbench.trial); tests pass a stand-in that workers can import.
TrialFn = Callable[..., TrialOutcome]


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
            raise UserError(
                f"{out_dir}: no suite.yaml here, nothing to resume (run without --resume)"
            )
        old = _stored_suite(stored)
        if old.hash() != suite.hash():
            changed = suite_diff(old.science(), suite.science())
            more = " ..." if len(changed) > 6 else ""
            raise UserError(
                f"{suite_path}: differs from the suite of the run in {out_dir} "
                f"(changed: {', '.join(changed[:6])}{more}); "
                "resume with the same suite, or start a new output directory"
            )
    elif (out_dir / "trials").exists() and any((out_dir / "trials").glob("*.json")):
        raise UserError(
            f"{out_dir}: already holds results; pass --resume to finish it, "
            "or choose another --output"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "trials").mkdir(exist_ok=True)
    if not resume:
        shutil.copyfile(suite_path, stored)


def _stored_suite(path: Path) -> Suite:
    """The suite a run directory was started with (its names were checked back then)."""
    try:
        return Suite.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, ValidationError) as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"{path}: unreadable suite ({first}); cannot resume this run") from None


def write_env(out_dir: Path, suite: Suite, invocation: dict[str, Any]) -> None:
    """env.json: the environment, the suite hash, and one record per invocation of the run.

    `started_at` is the first invocation's start and `finished_at` the last one's end, so a
    resumed run still reads as one run; `invocations` keeps every start, end and address.
    """
    path = out_dir / "env.json"
    try:
        previous = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        previous = {}
    invocations = list(previous.get("invocations", []))
    if invocations and "finished_at" not in invocations[-1] and "finished_at" in invocation:
        invocations[-1] = {**invocations[-1], **invocation}  # the end of this invocation
    else:
        invocations.append(invocation)
    env = results.environment()
    env.update(
        suite=suite.name,
        suite_hash=suite.hash(),
        started_at=invocations[0].get("started_at"),
        finished_at=invocations[-1].get("finished_at"),
        invocations=invocations,
    )
    results.write_json_atomic(path, env)


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
    path = out_dir / "trials" / f"{row['trial_id']}.json"
    results.write_json_atomic(path, {"row": row, "epochs": epochs})


def collect(out_dir: Path, suite: Suite, done: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Finished trials -> trials.parquet + epochs.parquet, in grid order. Returns status counts.

    `done` is finished_trials(out_dir): every trial file, also those of earlier invocations.
    """
    order = {spec.trial_id: i for i, spec in enumerate(suite.trials())}
    ids = sorted(done, key=lambda t: (order.get(t, len(order)), t))
    rows = [done[t]["row"] for t in ids]
    epochs = [e for t in ids for e in done[t]["epochs"]]
    trials_df = results.frame(rows, results.TRIAL_SCHEMA)
    results.write_parquet_atomic(trials_df, out_dir / "trials.parquet")
    epochs_df = results.frame(epochs, results.EPOCH_SCHEMA)
    results.write_parquet_atomic(epochs_df, out_dir / "epochs.parquet")
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def failed_row(suite: Suite, spec: TrialSpec, status: str, error: str) -> dict[str, Any]:
    """A row for a trial that died outside run_trial (a lost worker, a crashed actor)."""
    from halbench.trial import base_row

    return {**base_row(suite, spec), "status": status, "error": error, "node": None}


def ray_failure(exc: BaseException | None) -> tuple[str, str]:
    """(status, error) for a trial that Ray gave up on after its retries."""
    if exc is None:
        return "error", "RayTrialError: trial process failed"
    # Ray's memory monitor kills a worker that outgrows the node: that is an OOM, not a bug.
    from ray.exceptions import OutOfMemoryError

    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    message = lines[-1] if lines else "trial process failed"
    status = "oom" if isinstance(exc, OutOfMemoryError) else "error"
    # Ray's messages run to a paragraph on one line; the row needs the gist.
    return status, f"{type(exc).__name__}: {textwrap.shorten(message, 240, placeholder=' ...')}"


def _recorded_error(trial: Any) -> BaseException | None:
    """The exception Tune recorded for a failed trial, from the driver's own copy.

    (Trial.get_pickled_error reads the copy in the storage path, which is synced later.)
    """
    from ray import cloudpickle

    path = trial.pickled_error_file
    try:
        with open(path, "rb") as f:
            return cloudpickle.load(f)
    except Exception:  # noqa: BLE001 - no file, or an unpicklable error: still a row
        return None


def halbench_trial(
    config: dict[str, Any], suite_json: dict[str, Any], trial_fn: TrialFn | None
) -> None:
    """The Tune function trainable: one grid point.

    Its name is what the Ray dashboard shows for the trial actors; each trial logs its id when it
    starts, so the actor's log (dashboard: Actors -> halbench_trial -> Logs) says which trial runs.
    """
    from ray import tune

    from halbench.plugins import load_plugins

    load_plugins()  # the worker process may not have imported the user's plugin modules yet
    if trial_fn is None:
        from halbench.trial import run_trial as trial_fn
    suite = Suite.model_validate(suite_json)
    spec = TrialSpec.model_validate(config["spec"])
    print(f"[halbench] trial {spec.trial_id}", flush=True)
    started = placement.now()

    def report_epoch(epoch_row: dict[str, Any]) -> None:
        tune.report({k: v for k, v in epoch_row.items() if isinstance(v, int | float)})

    result = trial_fn(suite, spec, report=report_epoch)
    placement.record(result.row, started)  # node id, GPU ids, times; the node in an error
    blob = json.dumps({"row": result.row, "epochs": result.epochs}, default=str)
    tune.report({FINAL_KEY: blob})


class Progress:
    """One terminal line per finished trial: done/running/failed, elapsed, time left."""

    def __init__(self, total: int, already: int, stream: TextIO | None = None) -> None:
        self.total, self.done, self.failed, self.running = total, already, 0, 0
        self.start = time.monotonic()
        self.new_done = 0
        # None: sys.stderr at print time. Tune pickles its callbacks (and so this object),
        # and only the real sys.stderr pickles (by reference).
        self.stream = stream

    def started(self) -> None:
        self.running += 1

    def finished(self, trial_id: str, status: str) -> None:
        self.running = max(0, self.running - 1)
        self.done += 1
        self.new_done += 1
        self.failed += status != "ok"
        elapsed = time.monotonic() - self.start
        # Trials of one suite take similar times: the mean so far predicts the rest.
        left = (self.total - self.done) * elapsed / self.new_done
        self.say(
            f"{self.done}/{self.total} trials done ({self.failed} failed, {self.running} "
            f"running), elapsed {_fmt(elapsed)}, about {_fmt(left)} left; {trial_id}: {status}"
        )

    def say(self, message: str) -> None:
        print(f"[halbench] {message}", file=self.stream or sys.stderr, flush=True)


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class _Interrupt:
    """Ctrl-C while Tune runs: the first one stops the run gracefully, a second one at once.

    Tune's own SIGINT handler is switched off so that we know the run was interrupted (Tune
    returns from fit() as if it had finished) and can tell a trial killed by the Ctrl-C from a
    trial that failed.
    """

    def __init__(self, progress: Progress) -> None:
        self.requested = False
        self.progress = progress

    def handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.progress.say("interrupted: stopping running trials (Ctrl-C again to quit now)")

    @contextmanager
    def installed(self) -> Iterator[None]:
        previous = signal.signal(signal.SIGINT, self.handle)
        before = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
            if before is None:
                os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
            else:
                os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = before


def _tune_hooks(
    out_dir: Path,
    suite: Suite,
    todo: list[TrialSpec],
    progress: Progress,
    interrupt: _Interrupt,
    storage: str | None = None,
) -> tuple[Any, Any]:
    """The Tune callback that writes finished trials, and the stopper that obeys Ctrl-C."""
    from ray.tune import Callback, Stopper

    specs = {s.trial_id: s for s in todo}

    class ResultWriter(Callback):
        """Writes each finished trial on the driver, the moment Tune hands us its rows."""

        def on_trial_start(self, iteration, trials, trial, **info):  # noqa: ANN001
            progress.started()

        def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001
            if FINAL_KEY in result:
                blob = json.loads(result[FINAL_KEY])
                save_trial(out_dir, blob["row"], blob["epochs"])
                tune_storage.mirror_trial(storage, out_dir, blob["row"]["trial_id"])
                progress.finished(blob["row"]["trial_id"], blob["row"]["status"])

        def on_trial_recover(self, iteration, trials, trial, **info):  # noqa: ANN001
            progress.say(f"{trial.config['spec']['trial_id']}: worker lost, retrying")

        def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ANN001
            spec = specs[trial.config["spec"]["trial_id"]]
            if interrupt.requested or (out_dir / "trials" / f"{spec.trial_id}.json").exists():
                return  # killed by the Ctrl-C: not a result, it reruns on --resume
            status, error = ray_failure(_recorded_error(trial))
            save_trial(out_dir, failed_row(suite, spec, status, error), [])
            tune_storage.mirror_trial(storage, out_dir, spec.trial_id)
            progress.finished(spec.trial_id, status)

    class StopOnInterrupt(Stopper):
        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False

        def stop_all(self) -> bool:
            return interrupt.requested

    return ResultWriter(), StopOnInterrupt()


def check_data(specs: list[TrialSpec]) -> None:
    """On a local run, load every dataset once on this machine before any trial starts.

    A missing dataset is then a user mistake (one line, exit 2, nothing written) rather than
    one error row per trial, and a download (dataset.download) happens once here instead of in
    every concurrent trial at once. On a cluster the data lives on the workers: not checked.
    """
    from halbench import data

    for ds in {s.dataset.name: s.dataset for s in specs}.values():
        try:
            data.load(
                ds.name,
                root=ds.root,
                train_size=ds.train_size,
                test_size=ds.test_size,
                download=ds.download,
                **ds.params,
            )
        except ValueError as err:  # bad dataset params
            raise UserError(f"dataset {ds.name!r}: {err}") from None


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
    ray_temp_dir: Path | None = None,
    storage: str | None = None,
    trial_fn: TrialFn | None = None,
) -> RunSummary:
    """Run every trial of `suite` that `output` does not hold yet; write the parquet files.

    `address`: an existing Ray cluster ("auto", "host:port", "ray://..."); None starts a local
    Ray for this run (`num_cpus`, `num_gpus`, `dashboard`, `ray_temp_dir` apply to it); with an
    address, the cluster's dashboard URL is printed.
    `storage`: Tune's storage_path (a shared path or a cloud URI on a multi-node cluster);
    default `<output>/ray`. `trial_fn`: the trial function, importable on the workers
    (default halbench.trial.run_trial). Returns a summary; `interrupted` is True when some
    trials are missing (Ctrl-C), and the run can be finished with resume=True.
    """
    out_dir = (output or default_output(suite)).resolve()
    specs = [s for s in suite.trials() if not datasets or s.dataset.name in datasets]
    if datasets and not specs:
        known = ", ".join(d.name for d in suite.datasets)
        raise UserError(f"--datasets {','.join(datasets)}: none of the suite's datasets ({known})")
    if not address:
        check_data(specs)
    if use_ray:
        tune_storage.check_storage(storage)  # one line, exit 2, before Ray starts
    prepare_run_dir(suite, suite_path, out_dir, resume=resume)
    done = finished_trials(out_dir)
    todo = [s for s in specs if s.trial_id not in done]
    write_env(
        out_dir,
        suite,
        {
            "started_at": datetime.now(UTC).isoformat(),
            "address": address,
            "argv": sys.argv,
            "trials_to_run": len(todo),
        },
    )
    progress = Progress(len(specs), len(specs) - len(todo))
    progress.say(
        f"{suite.name}: {len(specs)} trials, {len(specs) - len(todo)} already done; "
        f"writing to {out_dir}"
    )

    summary = RunSummary(out_dir=out_dir, total=len(specs), skipped=len(specs) - len(todo))
    try:
        if todo and use_ray:
            _run_with_ray(
                suite,
                todo,
                out_dir,
                progress,
                max_concurrent=max_concurrent,
                address=address,
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                dashboard=dashboard,
                temp_dir=ray_temp_dir,
                storage=storage,
                trial_fn=trial_fn,
            )
        elif todo:
            _run_in_process(suite, todo, out_dir, progress, trial_fn)
    except KeyboardInterrupt:
        summary.interrupted = True
    finished = finished_trials(out_dir)
    summary.statuses = collect(out_dir, suite, finished)
    summary.interrupted = summary.interrupted or any(s.trial_id not in finished for s in specs)
    write_env(
        out_dir,
        suite,
        {"finished_at": datetime.now(UTC).isoformat(), "interrupted": summary.interrupted},
    )
    if build_report is not None:
        build_report(out_dir)
    return summary


def _run_in_process(
    suite: Suite, todo: list[TrialSpec], out_dir: Path, progress: Progress, trial_fn: TrialFn | None
) -> None:
    if trial_fn is None:
        from halbench.trial import run_trial as trial_fn

    for spec in todo:
        progress.started()
        result = trial_fn(suite, spec)
        save_trial(out_dir, result.row, result.epochs)
        progress.finished(spec.trial_id, result.row["status"])


def trial_resources(suite: Suite) -> dict[str, float]:
    """Ray resources of one trial from the suite's `resources` section."""
    res = suite.resources
    gpus = res.gpus_per_trial
    if gpus > 1 and not gpus.is_integer():
        raise UserError(
            f"resources.gpus_per_trial: a fraction (<= 1) or a whole number of GPUs, got {gpus:g}"
        )
    if res.exclusive_gpu and gpus > 0:
        gpus = max(1.0, gpus)  # a whole GPU: no other trial disturbs this one's timings
    resources = {"cpu": res.cpus_per_trial, "gpu": gpus}
    if res.memory_gb:
        resources["memory"] = res.memory_gb * 1024**3
    return resources


def _check_fits(resources: dict[str, float]) -> None:
    """A local Ray never grows: refuse a trial that no node can hold instead of waiting forever."""
    import ray

    have = {"cpu": "CPU", "gpu": "GPU", "memory": "memory"}
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    for key, ray_key in have.items():
        need = resources.get(key, 0)
        best = max((n.get(ray_key, 0.0) for n in nodes), default=0.0)
        if need > best:
            field_name = {"cpu": "cpus_per_trial", "gpu": "gpus_per_trial", "memory": "memory_gb"}[
                key
            ]
            shown = f"{need / 1024**3:g} GB" if key == "memory" else f"{need:g}"
            have_s = f"{best / 1024**3:.1f} GB" if key == "memory" else f"{best:g}"
            raise UserError(
                f"resources.{field_name}: a trial needs {shown} {ray_key} but the "
                f"local Ray has {have_s} (set --num-cpus/--num-gpus, or the suite)"
            )


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a host:port where nothing listens (ray.init would retry for minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto" or a ray:// client address: Ray resolves and reports those itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise UserError(
            f"--address {address}: no Ray cluster answers there ({err.strerror or err}); "
            "start one with 'ray start --head', or check the host and port"
        ) from None


def use_auth_token_if_present() -> bool:
    """Send the Ray auth token when connecting to a cluster, if this machine has one.

    Ray 2.60's driver sends its token only when RAY_AUTH_MODE=token, even though a token is in
    ~/.ray/auth_token (or $RAY_AUTH_TOKEN / $RAY_AUTH_TOKEN_PATH); without it, connecting to a
    token-protected cluster retries "Unauthenticated" for half a minute and fails. A token sent
    to a cluster without authentication is ignored, so sending it whenever present is safe. An
    explicit RAY_AUTH_MODE is left alone. Returns whether token mode was switched on here.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return False
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    token_file = Path(path).expanduser() if path else Path.home() / ".ray" / "auth_token"
    if not os.environ.get("RAY_AUTH_TOKEN") and not token_file.is_file():
        return False
    os.environ["RAY_AUTH_MODE"] = "token"
    try:  # Ray caches its config at import; this is how ray.init itself turns token mode on
        from ray._private.authentication.authentication_token_setup import _enable_token_auth
    except ImportError:  # a Ray without token authentication: nothing to switch on
        return True
    _enable_token_auth()
    return True


def init_ray(
    address: str | None,
    num_cpus: int | None,
    num_gpus: int | None,
    dashboard: bool,
    temp_dir: Path | None,
) -> str | None:
    """Connect to a cluster (address) or start a local Ray. Returns the dashboard URL if any."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Tune's new console output prints a configuration box and paths even at verbose=0; our
    # Progress lines are the terminal output.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune's default loggers write every reported result again as JSON, CSV and TensorBoard
    # events per trial; our ResultWriter already keeps what we need. Without them the
    # per-trial overhead of benchmarks/ray_overhead.py fell from 0.72 s to 0.43 s here.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # Without those files, Tune's ResultGrid warns at the end of fit() that it "failed to fetch
    # metrics" for every trial; halbench never reads them (trials/*.json are the record).
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    if address:
        check_reachable(address)
        exposure.ensure_private_token(create=False)  # warns if others can read it
        use_auth_token_if_present()
        try:
            ctx = ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as err:
            msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(
                f"--address {address}: cannot connect to a Ray cluster ({msg})"
            ) from None
    else:
        exposure.ensure_private_token(create=True)  # before Ray writes one with mode 644
        with exposure.loopback_only():  # every service of a local Ray on 127.0.0.1
            ctx = _init_local(ray, num_cpus, num_gpus, dashboard, temp_dir)
    url = getattr(ctx, "dashboard_url", None)
    if not url:
        return None
    return url if url.startswith("http") else f"http://{url}"


def _init_local(
    ray: Any, num_cpus: int | None, num_gpus: int | None, dashboard: bool, temp_dir: Path | None
) -> Any:
    return ray.init(
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        include_dashboard=dashboard,
        dashboard_host="127.0.0.1",  # never on a public interface: it can run code
        object_store_memory=LOCAL_OBJECT_STORE_BYTES,
        log_to_driver=False,
        configure_logging=False,
        _temp_dir=str(temp_dir) if temp_dir else None,
    )


def _run_with_ray(
    suite: Suite,
    todo: list[TrialSpec],
    out_dir: Path,
    progress: Progress,
    *,
    max_concurrent: int | None,
    address: str | None,
    num_cpus: int | None,
    num_gpus: int | None,
    dashboard: bool,
    temp_dir: Path | None,
    storage: str | None,
    trial_fn: TrialFn | None,
) -> None:
    """Run `todo` as Tune trials on a new local Ray, the cluster at `address` or this Ray."""
    import ray
    from ray import tune

    resources = trial_resources(suite)
    started_here = not ray.is_initialized()
    url = init_ray(address, num_cpus, num_gpus, dashboard, temp_dir) if started_here else None
    try:
        if url:  # a local Ray has one only with --dashboard
            token = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
            hint = (
                " (token authentication: print the token with 'ray get-auth-token'; "
                "scripts send 'Authorization: Bearer <token>')"
                if token
                else ""
            )
            progress.say(f"Ray dashboard: {url}{hint}")
        if not address:
            _check_fits(resources)
        interrupt = _Interrupt(progress)
        writer, stopper = _tune_hooks(out_dir, suite, todo, progress, interrupt, storage)
        trainable = tune.with_resources(
            placement.named_trainable(
                tune.with_parameters(
                    halbench_trial, suite_json=suite.model_dump(mode="json"), trial_fn=trial_fn
                )
            ),
            resources,
        )
        tuner = tune.Tuner(
            trainable,
            param_space={"spec": tune.grid_search([s.model_dump(mode="json") for s in todo])},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=max_concurrent or suite.resources.max_concurrent,
                # Short trials: no actor start-up per trial. With the dashboard, one actor per
                # trial, so that each actor carries its trial's name (placement.named_trainable).
                reuse_actors=not dashboard,
                trial_name_creator=lambda t: t.config["spec"]["trial_id"],
                trial_dirname_creator=lambda t: t.config["spec"]["trial_id"],
            ),
            run_config=tune.RunConfig(
                name=f"tune-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}",
                storage_path=tune_storage.storage_path(storage, out_dir),
                callbacks=[writer],
                stop=stopper,
                failure_config=tune.FailureConfig(max_failures=MAX_RAY_RETRIES),
                verbose=0,
            ),
        )
        with interrupt.installed():
            tuner.fit()
        if interrupt.requested:
            raise KeyboardInterrupt
    finally:
        if started_here:
            ray.shutdown()
