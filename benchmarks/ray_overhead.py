"""What Ray costs a halbench run, in the three figures a user feels.

    PYTHONPATH=. python benchmarks/ray_overhead.py [--cpus 2] [--trial-seconds 10]

(a) fixed cost of a run: a local Ray started, connected and shut down as `halbench run` does
    it (init_ray + ray.shutdown), and connecting to / disconnecting from a running head;
(b) per-trial overhead on a running cluster: the marginal cost of one more trial, from two
    serial runs (one trial at a time) of 2 and of 8 tiny trials on a running head, minus the
    difference of the same trials in a direct loop with one torch thread (as a trial's worker):
        ((serial_8 - serial_2) - (direct_8 - direct_2)) / 6,
    so that the costs every run pays once (Tune's setup, the first worker's imports) cancel
    (each measured after an untimed warm-up run);
(c) wall-time ratio halbench / direct loop for 8 trials of about --trial-seconds each: the
    runner on a local Ray with --cpus CPUs (trials side by side), end to end, against
    run_trial in a loop in this process with --cpus torch threads (the same CPU budget).
Goals: (b) <= 0.25 s, (c) <= 1.10.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml

from halbench.run.cluster import init_ray
from halbench.run.options import RunOptions
from halbench.run.runner import run_suite
from halbench.suite import Suite, parse_suite
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
    args = parser.parse_args()
    if args.cpus < 1 or args.trial_seconds <= 0:
        parser.error("--cpus and --trial-seconds must be positive")
    torch.set_num_threads(args.cpus)  # this process only; each Ray worker sets its own
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="rov-", dir="/tmp") as tmp:
        workdir = Path(tmp)
        # (a) the fixed cost of a local run
        seconds["a_local_start_stop"] = time_start_stop(None, args.cpus, workdir / "ra")
        # (b) marginal cost of a trial on a running head
        small = {n: smoke_suite(workdir, f"small{n}", n, 1) for n in (2, 8)}
        # One torch thread, as a Ray worker of a one-CPU trial has (Ray sets OMP_NUM_THREADS):
        # on a loaded machine two threads per op ran 2-4x slower, which is not Ray's overhead.
        torch.set_num_threads(1)
        time_direct(small[2][0])  # warm-up: the first trial in a process pays its imports
        direct = {n: time_direct(s) for n, (s, _) in small.items()}
        torch.set_num_threads(args.cpus)
        with ray_head(args.cpus, workdir) as address:
            seconds["a_connect_disconnect"] = time_start_stop(address, args.cpus, None)
            # warm-up: the head's first job starts its worker pool and caches the job's code
            time_runner(*small[2], workdir / "warm", address=address, max_concurrent=1)
            serial = {
                n: time_runner(s, p, workdir / f"serial{n}", address=address, max_concurrent=1)
                for n, (s, p) in small.items()
            }
        per_trial = ((serial[8] - serial[2]) - (direct[8] - direct[2])) / 6
        seconds.update({f"b_direct_{n}": direct[n] for n in direct})
        seconds.update({f"b_serial_{n}": serial[n] for n in serial})
        # (c) 8 long trials, end to end on a local Ray, against the direct loop
        epochs, per_epoch, fixed = calibrate_epochs(workdir, args.trial_seconds)
        suite, path = smoke_suite(workdir, "long", 8, epochs)
        seconds["c_direct"] = time_direct(suite)
        seconds["c_halbench"] = time_runner(
            suite, path, workdir / "long", num_cpus=args.cpus, ray_temp_dir=workdir / "rc"
        )
    ratio = seconds["c_halbench"] / seconds["c_direct"]
    print(f"torch {torch.__version__}, {args.cpus} CPUs, load average {os.getloadavg()[0]:.1f}")
    for name, value in seconds.items():
        print(f"  {name:22s} {value:7.1f} s")
    print(f"(a) fixed cost of a local run (start, connect, shutdown): "
          f"{seconds['a_local_start_stop']:.1f} s; joining a running head: "
          f"{seconds['a_connect_disconnect']:.1f} s")  # fmt: skip
    print(f"(b) per-trial overhead on a running cluster: {per_trial:.2f} s (goal <= 0.25)")
    planned = fixed + epochs * per_epoch
    ran = seconds["c_direct"] / 8
    print(f"(c) halbench / direct, 8 trials of {epochs} epochs (planned {planned:.1f} s, "
          f"ran {ran:.1f} s each in the loop): {ratio:.3f} (goal <= 1.10)")  # fmt: skip
    print(
        json.dumps(
            {
                "benchmark": "ray_overhead",
                "params": vars(args),
                "epochs_c": epochs,
                "direct_trial_s": seconds["c_direct"] / 8,
                "seconds": seconds,
                "fixed_cost_s": seconds["a_local_start_stop"],
                "per_trial_overhead_s": per_trial,
                "ratio": ratio,
            }
        )
    )


if __name__ == "__main__":
    main()
