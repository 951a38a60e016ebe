"""What Ray costs a halbench run, in the three figures a user feels.

    PYTHONPATH=. python benchmarks/ray_overhead.py [--cpus 2] [--trial-seconds 10] [--rounds 3]

(a) fixed cost of a run: a local Ray started, connected and shut down as `halbench run` does
    it (init_ray + ray.shutdown), and connecting to / disconnecting from a running head;
(b) per-trial overhead on a running cluster: the marginal cost of one more trial, from serial
    runs (one trial at a time) of 2 and of 18 tiny trials on a running head, minus the
    difference of the same trials in a direct loop with one torch thread (as a trial's worker):
        ((serial_18 - serial_2) - (direct_18 - direct_2)) / 16,
    so that the costs every run pays once (Tune's setup, the job's workers and their imports)
    cancel; the median of --rounds interleaved rounds, after an untimed warm-up run. What
    cancels is printed too: a run on a running head pays it before its first trial. And per
    epoch, from a third run of 2 trials of 1 + LONG_EPOCHS epochs:
        ((serial_2x41 - serial_2) - (direct_2x41 - direct_2)) / (2 * 40)
    (halbench.run.ray_tune.REPORT_EVERY_S keeps an epoch's report to the driver off that bill);
(c) wall-time ratio halbench / direct loop for 8 trials of about --trial-seconds each: the
    runner on a local Ray with --cpus CPUs (trials side by side), end to end, against
    run_trial in a loop in this process with --cpus torch threads (the same CPU budget).
    Also against a process pool: --cpus one-thread processes side by side, start-up included,
    which is what Ray does without Ray; (c) alone would credit Ray with the gain of running
    small trials side by side instead of splitting each op over threads.
Goals: (b) <= 0.25 s, (c) <= 1.10.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml

from halbench.run.cluster import init_ray
from halbench.run.options import RunOptions
from halbench.run.runner import run_suite
from halbench.suite import Suite, TrialSpec, parse_suite
from halbench.trial import run_trial

ROOT = Path(__file__).resolve().parents[1]


def smoke_suite(workdir: Path, name: str, trials: int, epochs: int) -> tuple[Suite, Path]:
    """The smoke suite (synthetic data, tiny CNN) with `trials` trials (2 losses x seeds)."""
    doc = yaml.safe_load((ROOT / "suites/smoke.yaml").read_text())
    doc["name"] = name
    doc["grid"]["seed"] = list(range(trials // 2))
    doc["train"]["epochs"] = epochs
    doc["probes"] = {"enabled": False}
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return parse_suite(doc, path), path


def time_direct(suite: Suite) -> float:
    start = time.perf_counter()
    for spec in suite.trials():
        result = run_trial(suite, spec)
        if result.row["status"] != "ok":
            raise RuntimeError(f"{spec.trial_id}: {result.row['error']}")
    return time.perf_counter() - start


def _one_thread() -> None:
    torch.set_num_threads(1)  # as a Ray worker of a one-CPU trial (Ray sets OMP_NUM_THREADS)


def _pool_trial(job: tuple[Suite, TrialSpec]) -> str:
    result = run_trial(*job)
    return f"{job[1].trial_id}: {result.row['error']}" if result.row["status"] != "ok" else ""


def time_pool(suite: Suite, workers: int) -> float:
    """The trials in `workers` fresh one-thread processes side by side, their start-up included."""
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")  # no forked torch thread pools
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
        errors = [e for e in pool.map(_pool_trial, [(suite, s) for s in suite.trials()]) if e]
    if errors:
        raise RuntimeError(f"pool: {errors}")
    return time.perf_counter() - start


def time_runner(suite: Suite, path: Path, out: Path, **kw) -> float:
    start = time.perf_counter()
    summary = run_suite(suite, path, RunOptions(output=out, **kw))
    elapsed = time.perf_counter() - start
    if summary.statuses != {"ok": summary.total}:
        raise RuntimeError(f"runner: trials failed: {summary.statuses}")
    return elapsed


def time_start_stop(address: str | None, cpus: int, temp_dir: Path | None) -> float:
    import ray

    start = time.perf_counter()
    init_ray(address, None if address else cpus, None, False, temp_dir)
    ray.shutdown()
    return time.perf_counter() - start


@contextmanager
def ray_head(cpus: int, workdir: Path) -> Iterator[str]:
    """A Ray head on 127.0.0.1 in its own process group (ended with it); yields its address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block"]
    cmd += ["--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", str(cpus)]
    cmd += ["--include-dashboard=false", "--temp-dir", str(workdir / "head")]
    log = workdir / "head.log"
    with log.open("w") as out:
        head = subprocess.Popen(cmd, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in log.read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start --head did not come up: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(head.pid, sig)
            except ProcessLookupError:
                break
            time.sleep(5)
        head.wait(timeout=30)


SMALL = (2, 18)  # trials in (b)'s two serial runs of one epoch each
LONG_EPOCHS = 40  # the extra epochs of (b)'s per-epoch run (2 trials)


def b_round(
    small: dict[int | str, tuple[Suite, Path]], address: str, out: Path
) -> dict[str, float]:
    """One round of (b): the direct loop and the serial runs of every size, interleaved."""
    few, many = SMALL
    t: dict[str, float] = {}
    for n in (*SMALL, "long"):
        t[f"direct_{n}"] = time_direct(small[n][0])
        t[f"serial_{n}"] = time_runner(*small[n], out / str(n), address=address, max_concurrent=1)
    ray_s = t[f"serial_{many}"] - t[f"serial_{few}"]
    t["per_trial"] = (ray_s - (t[f"direct_{many}"] - t[f"direct_{few}"])) / (many - few)
    t["run_fixed"] = t[f"serial_{few}"] - t[f"direct_{few}"] - few * t["per_trial"]
    ray_s = t["serial_long"] - t[f"serial_{few}"]
    t["per_epoch"] = (ray_s - (t["direct_long"] - t[f"direct_{few}"])) / (few * LONG_EPOCHS)
    return t


def calibrate_epochs(workdir: Path, seconds: float) -> tuple[int, float, float]:
    """Epochs for a smoke trial of about `seconds` in this process: (epochs, s/epoch, fixed s).

    Two trials of 2 and 8 epochs separate a trial's fixed part (data, model, evaluation) from
    its per-epoch part; one short trial alone overstates the epoch and undershoots `seconds`.
    """
    timed: dict[int, float] = {}
    for n in (2, 2, 8):  # the first run is the warm-up: imports, allocator, kernels
        suite, _ = smoke_suite(workdir, f"calibrate{n}", 2, n)
        start = time.perf_counter()
        run_trial(suite, suite.trials()[0])
        timed[n] = time.perf_counter() - start
    per_epoch = (timed[8] - timed[2]) / 6
    fixed = max(0.0, timed[2] - 2 * per_epoch)
    return max(1, round((seconds - fixed) / per_epoch)), per_epoch, fixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray and the head")
    parser.add_argument("--trial-seconds", type=float, default=10.0, help="trial length for (c)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (b), median reported")
    args = parser.parse_args()
    if args.cpus < 1 or args.trial_seconds <= 0 or args.rounds < 1:
        parser.error("--cpus, --trial-seconds and --rounds must be positive")
    torch.set_num_threads(args.cpus)  # this process only; each Ray worker sets its own
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="rov-", dir="/tmp") as tmp:
        workdir = Path(tmp)
        # (a) the fixed cost of a local run
        seconds["a_local_start_stop"] = time_start_stop(None, args.cpus, workdir / "ra")
        # (b) marginal cost of a trial on a running head
        small: dict[int | str, tuple[Suite, Path]] = {
            n: smoke_suite(workdir, f"small{n}", n, 1) for n in SMALL
        }
        small["long"] = smoke_suite(workdir, "small-long", SMALL[0], 1 + LONG_EPOCHS)
        with ray_head(args.cpus, workdir) as address:
            seconds["a_connect_disconnect"] = time_start_stop(address, args.cpus, None)
            # warm-up: the head's first job starts its worker pool and caches the job's code
            time_runner(*small[2], workdir / "warm", address=address, max_concurrent=1)
            # One torch thread, as a Ray worker of a one-CPU trial has (Ray sets
            # OMP_NUM_THREADS): on a loaded machine two threads per op ran 2-4x slower.
            torch.set_num_threads(1)
            time_direct(small[2][0])  # warm-up: the first trial in a process pays its imports
            rounds = [b_round(small, address, workdir / f"r{i}") for i in range(args.rounds)]
            torch.set_num_threads(args.cpus)
        per_trial = statistics.median(r["per_trial"] for r in rounds)
        run_fixed = statistics.median(r["run_fixed"] for r in rounds)
        epoch_overhead = statistics.median(r["per_epoch"] for r in rounds)
        for key in rounds[0]:
            seconds[f"b_{key}"] = statistics.median(r[key] for r in rounds)
        # (c) 8 long trials, end to end on a local Ray, against the direct loop
        epochs, per_epoch, fixed = calibrate_epochs(workdir, args.trial_seconds)
        suite, path = smoke_suite(workdir, "long", 8, epochs)
        seconds["c_direct"] = time_direct(suite)
        seconds["c_pool"] = time_pool(suite, args.cpus)
        seconds["c_halbench"] = time_runner(
            suite, path, workdir / "long", num_cpus=args.cpus, ray_temp_dir=workdir / "rc"
        )
    ratio = seconds["c_halbench"] / seconds["c_direct"]
    ratio_pool = seconds["c_halbench"] / seconds["c_pool"]
    print(f"torch {torch.__version__}, {args.cpus} CPUs, load average {os.getloadavg()[0]:.1f}")
    for name, value in seconds.items():
        print(f"  {name:22s} {value:7.1f} s")
    print(f"(a) fixed cost of a local run (start, connect, shutdown): "
          f"{seconds['a_local_start_stop']:.1f} s; joining a running head: "
          f"{seconds['a_connect_disconnect']:.1f} s")  # fmt: skip
    print(f"(a) a run on a running head, before its first trial (Tune, the job's workers): "
          f"{run_fixed:.1f} s")  # fmt: skip
    each = ", ".join(f"{r['per_trial']:.2f}" for r in rounds)
    print(f"(b) per-trial overhead on a running cluster: {per_trial:.2f} s (goal <= 0.25; "
          f"median of {args.rounds} rounds: {each})")  # fmt: skip
    print(f"    and per epoch of a running trial: {epoch_overhead * 1000:.1f} ms")
    planned = fixed + epochs * per_epoch
    ran = seconds["c_direct"] / 8
    print(f"(c) halbench / direct, 8 trials of {epochs} epochs (planned {planned:.1f} s, "
          f"ran {ran:.1f} s each in the loop): {ratio:.3f} (goal <= 1.10)")  # fmt: skip
    print(f"    halbench / {args.cpus} one-thread processes side by side: {ratio_pool:.3f}")
    print(
        json.dumps(
            {
                "benchmark": "ray_overhead",
                "params": vars(args),
                "epochs_c": epochs,
                "direct_trial_s": seconds["c_direct"] / 8,
                "seconds": seconds,
                "fixed_cost_s": seconds["a_local_start_stop"],
                "run_on_head_fixed_s": run_fixed,
                "per_trial_overhead_s": per_trial,
                "per_trial_rounds_s": [r["per_trial"] for r in rounds],
                "per_epoch_overhead_s": epoch_overhead,
                "ratio": ratio,
                "ratio_pool": ratio_pool,
            }
        )
    )


if __name__ == "__main__":
    main()
