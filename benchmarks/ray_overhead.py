"""Ray overhead: a suite through halbench's runner against the same trials in a plain loop.

    PYTHONPATH=. python benchmarks/ray_overhead.py [--seeds 4 --cpus 2] [--epochs N] [--cluster]

The smoke suite (synthetic data, tiny CNN) with `--seeds` seeds gives 2 x seeds short trials.
In one run, the script times
- direct: halbench.trial.run_trial called in a loop in this process, with `--cpus` torch
  threads (the same CPU budget as the runner);
- halbench: run_suite on a local Ray with `--cpus` CPUs, end to end (Ray start and stop,
  Tune, actor start-up, trials side by side, parquet files);
- serial: the same through Ray with one trial at a time, which isolates the overhead;
- ray start/stop: ray.init and ray.shutdown alone, as the runner calls them.
Per-trial overhead = (serial - ray start/stop - direct) / trials.
With --cluster, a Ray head (`ray start --head`, --cpus CPUs, 127.0.0.1) is started first and
not timed, and the runs use `--address`: the case of a grid sent to a running cluster, where
"ray start/stop" is connecting and disconnecting.
Goal: halbench / direct <= 1.25 for 8 trials on 2 CPUs.
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
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
import yaml

from halbench.run.cluster import init_ray
from halbench.run.options import RunOptions
from halbench.run.runner import run_suite
from halbench.suite import Suite, parse_suite
from halbench.trial import run_trial

ROOT = Path(__file__).resolve().parents[1]


def smoke_suite(seeds: int, epochs: int | None, workdir: Path) -> tuple[Suite, Path]:
    doc = yaml.safe_load((ROOT / "suites/smoke.yaml").read_text())
    doc["grid"]["seed"] = list(range(seeds))
    if epochs:
        doc["train"]["epochs"] = epochs
    path = workdir / "smoke.yaml"
    path.write_text(yaml.safe_dump(doc))
    return parse_suite(doc, path), path


def time_direct(suite: Suite) -> float:
    start = time.perf_counter()
    for spec in suite.trials():
        result = run_trial(suite, spec)
        if result.row["status"] != "ok":
            raise RuntimeError(f"{spec.trial_id}: {result.row['error']}")
    return time.perf_counter() - start


def time_runner(
    suite: Suite, path: Path, out: Path, cpus: int, concurrent: int | None, address: str | None
) -> float:
    start = time.perf_counter()
    options = RunOptions(
        output=out,
        num_cpus=None if address else cpus,
        max_concurrent=concurrent,
        address=address,
    )
    summary = run_suite(suite, path, options)
    elapsed = time.perf_counter() - start
    if summary.statuses != {"ok": summary.total}:
        raise RuntimeError(f"runner: trials failed: {summary.statuses}")
    return elapsed


def time_ray_start_stop(cpus: int, address: str | None) -> float:
    import ray

    start = time.perf_counter()
    init_ray(address, None if address else cpus, None, False, None)
    ray.shutdown()
    return time.perf_counter() - start


@contextmanager
def ray_head(cpus: int, workdir: Path) -> Iterator[str]:
    """A Ray head on 127.0.0.1 in its own process group (ended with it); yields its address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_cli = str(Path(sys.executable).parent / "ray")
    cmd = [ray_cli, "start", "--head", "--block", "--node-ip-address", "127.0.0.1"]
    cmd += ["--port", str(port), "--num-cpus", str(cpus), "--include-dashboard=false"]
    cmd += ["--temp-dir", str(workdir / "ray-head")]
    head = subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:  # ready once its GCS accepts connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if head.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("ray start --head did not come up") from None
                time.sleep(0.5)
        time.sleep(3)  # the raylet registers after the GCS listens
        yield address
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(head.pid, sig)
            except ProcessLookupError:
                break
            time.sleep(5)
        head.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4, help="trials = 2 losses x seeds")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--epochs", type=int, help="longer trials (default: the smoke suite's)")
    parser.add_argument(
        "--cluster", action="store_true", help="run on a Ray head started beforehand (untimed)"
    )
    args = parser.parse_args()
    if args.seeds < 1 or args.cpus < 1 or (args.epochs is not None and args.epochs < 1):
        parser.error("--seeds, --cpus and --epochs must be positive")
    torch.set_num_threads(args.cpus)  # this process only; each Ray worker sets its own

    with tempfile.TemporaryDirectory(prefix="ray_overhead-") as tmp:
        workdir = Path(tmp)
        suite, path = smoke_suite(args.seeds, args.epochs, workdir)
        n = len(suite.trials())
        with ray_head(args.cpus, workdir) if args.cluster else nullcontext(None) as address:
            seconds = {
                "direct": time_direct(suite),
                "halbench": time_runner(
                    suite, path, workdir / "parallel", args.cpus, None, address
                ),
                "serial": time_runner(suite, path, workdir / "serial", args.cpus, 1, address),
                "ray_start_stop": time_ray_start_stop(args.cpus, address),
            }
    ratio = seconds["halbench"] / seconds["direct"]
    per_trial = (seconds["serial"] - seconds["ray_start_stop"] - seconds["direct"]) / n
    print(
        f"smoke suite, {n} trials of {suite.train.epochs} epochs, "
        f"{'a running Ray head' if args.cluster else 'local Ray'} with {args.cpus} "
        f"CPUs, torch {torch.__version__}"
    )
    for name, value in seconds.items():
        print(f"  {name:15s} {value:7.1f} s")
    print(f"  per-trial overhead (serial - start/stop - direct) / trials: {per_trial:.2f} s")
    print(f"halbench / direct loop: {ratio:.3f} (goal <= 1.25)")
    print(
        json.dumps(
            {
                "benchmark": "ray_overhead",
                "params": vars(args),
                "trials": n,
                "seconds": seconds,
                "per_trial_overhead_s": per_trial,
                "ratio": ratio,
            }
        )
    )


if __name__ == "__main__":
    main()
