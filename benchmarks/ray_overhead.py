"""Ray overhead: a suite through halbench's runner against the same trials in a plain loop.

    PYTHONPATH=. python benchmarks/ray_overhead.py [--seeds 4 --cpus 2]

The smoke suite (synthetic data, tiny CNN) with `--seeds` seeds gives 2 x seeds short trials.
In one run, the script times
- direct: halbench.trial.run_trial called in a loop in this process, with `--cpus` torch
  threads (the same CPU budget as the runner);
- halbench: run_suite on a local Ray with `--cpus` CPUs, end to end (Ray start and stop,
  Tune, actor start-up, trials side by side, parquet files);
- serial: the same through Ray with one trial at a time, which isolates the overhead;
- ray start/stop: ray.init and ray.shutdown alone, as the runner calls them.
Per-trial overhead = (serial - ray start/stop - direct) / trials.
Goal: halbench / direct <= 1.25 for 8 trials on 2 CPUs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

from halbench.runner import init_ray, run_suite
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


def time_runner(suite: Suite, path: Path, out: Path, cpus: int, concurrent: int | None) -> float:
    start = time.perf_counter()
    summary = run_suite(suite, path, output=out, num_cpus=cpus, max_concurrent=concurrent)
    elapsed = time.perf_counter() - start
    if summary.statuses != {"ok": summary.total}:
        raise RuntimeError(f"runner: trials failed: {summary.statuses}")
    return elapsed


def time_ray_start_stop(cpus: int) -> float:
    import ray

    start = time.perf_counter()
    init_ray(None, cpus, None, False, None)
    ray.shutdown()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4, help="trials = 2 losses x seeds")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--epochs", type=int, help="longer trials (default: the smoke suite's)")
    args = parser.parse_args()
    if args.seeds < 1 or args.cpus < 1 or (args.epochs is not None and args.epochs < 1):
        parser.error("--seeds, --cpus and --epochs must be positive")
    torch.set_num_threads(args.cpus)  # this process only; each Ray worker sets its own

    with tempfile.TemporaryDirectory(prefix="ray_overhead-") as tmp:
        workdir = Path(tmp)
        suite, path = smoke_suite(args.seeds, args.epochs, workdir)
        n = len(suite.trials())
        seconds = {
            "direct": time_direct(suite),
            "halbench": time_runner(suite, path, workdir / "parallel", args.cpus, None),
            "serial": time_runner(suite, path, workdir / "serial", args.cpus, 1),
            "ray_start_stop": time_ray_start_stop(args.cpus),
        }
    ratio = seconds["halbench"] / seconds["direct"]
    per_trial = (seconds["serial"] - seconds["ray_start_stop"] - seconds["direct"]) / n
    print(
        f"smoke suite, {n} trials of {suite.train.epochs} epochs, local Ray with {args.cpus} "
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
