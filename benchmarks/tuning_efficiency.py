"""Tuning efficiency: ASHA against the same tuning trials without early stopping (FIFO).

    PYTHONPATH=. python benchmarks/tuning_efficiency.py [--data fashion-mnist|synthetic]
        [--train-size 3000] [--budget 8] [--epochs 6] [--cpus 2]

One tuned suite (hal and nca, random search, the same seeded configurations in both runs) runs
twice through `halbench run`'s runner on one local Ray: `scheduler: asha` and `scheduler: fifo`.
Printed per run: tuning epochs spent, and per loss the configuration picked, its validation
score after the full tuning epochs (from the FIFO run, where every trial ran them all) and the
test accuracy of its final trial. Goal: ASHA spends at most half of FIFO's epochs and picks,
per loss, a configuration within 0.5 points of FIFO's pick on validation.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import polars as pl
import yaml

from halbench.run.cluster import init_ray
from halbench.run.options import RunOptions
from halbench.run.runner import run_suite
from halbench.suite import load_suite

FASHION = "/usr/share/datasets/fashion-mnist"


def suite_doc(args: argparse.Namespace, scheduler: str) -> dict:
    if args.data == "fashion-mnist":
        dataset = {"name": "fashion-mnist", "root": FASHION, "train_size": args.train_size,
                   "test_size": args.test_size}  # fmt: skip
    else:
        params = {"num_classes": 4, "image_size": 16, "channels": 1, "noise": 2.0}
        dataset = {"name": "synthetic", "train_size": args.train_size,
                   "test_size": args.test_size, "params": params}  # fmt: skip
    return {
        "name": f"tuning-efficiency-{scheduler}",
        "dataset": dataset,
        "model": {"backbone": "small_cnn", "params": {"width": 8}},
        "losses": [{"name": "hal"}, {"name": "nca"}],
        "grid": {"batch_size": [128], "embedding_dim": [32], "seed": [0]},
        "train": {"epochs": args.epochs, "lr": 3.0e-3, "deterministic": True},
        "eval": {"ks": [1, 5, 10]},
        "probes": {"enabled": False},
        "resources": {"cpus_per_trial": 1},
        "tune": {
            "validation": 0.2,
            "budget": args.budget,
            "epochs": args.epochs,
            "scheduler": scheduler,
            "grace_epochs": 1,
            "metric": "knn_acc_10",
            "space": {
                "lr": {"loguniform": [1.0e-5, 3.0e-2]},
                "weight_decay": {"loguniform": [1.0e-6, 1.0e-2]},
                "hal": {"scale": {"uniform": [2, 64]}},
                "nca": {"scale": {"loguniform": [0.1, 10]}},
            },
        },
        "final": {"seeds": [0], "epochs": args.epochs},
    }


def run_one(
    args: argparse.Namespace, scheduler: str, work: Path
) -> tuple[pl.DataFrame, pl.DataFrame, float]:
    path = work / f"{scheduler}.yaml"
    path.write_text(yaml.safe_dump(suite_doc(args, scheduler)))
    out = work / scheduler
    start = time.perf_counter()
    run_suite(load_suite(path), path, RunOptions(output=out))
    seconds = time.perf_counter() - start
    return pl.read_parquet(out / "tuning.parquet"), pl.read_parquet(out / "trials.parquet"), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["fashion-mnist", "synthetic"], default="fashion-mnist")
    parser.add_argument("--train-size", type=int, default=3000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--budget", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    import ray

    init_ray(None, args.cpus, 0, False, None)
    work = Path(tempfile.mkdtemp(prefix="tuning-efficiency-"))
    try:
        asha, asha_final, asha_s = run_one(args, "asha", work)
        fifo, fifo_final, fifo_s = run_one(args, "fifo", work)
    finally:
        ray.shutdown()
    # the FIFO table holds every configuration's full-epoch validation score
    full = {(r["loss"], r["trial_index"]): r["last_val"] for r in fifo.iter_rows(named=True)}
    out: dict = {"data": args.data, "train_size": args.train_size, "budget": args.budget,
                 "epochs": args.epochs}  # fmt: skip
    for name, tun, final, seconds in (("asha", asha, asha_final, asha_s),
                                      ("fifo", fifo, fifo_final, fifo_s)):  # fmt: skip
        picks = {}
        for row in tun.filter(pl.col("chosen")).iter_rows(named=True):
            test = final.filter(pl.col("tuned_from") == row["trial_id"])["knn_acc_10"]
            picks[row["loss"]] = {
                "trial_index": row["trial_index"],
                "config": json.loads(row["config"]),
                "val_full": full[(row["loss"], row["trial_index"])],
                "test_knn_acc_10": test[0] if len(test) else None,
            }
        out[name] = {
            "tuning_epochs": int(tun["epochs_run"].sum()),
            "stopped_early": int(tun["stopped_early"].sum()),
            "seconds": round(seconds, 1),
            "picks": picks,
        }
    ratio = out["asha"]["tuning_epochs"] / out["fifo"]["tuning_epochs"]
    gaps = {
        loss: 100 * (out["fifo"]["picks"][loss]["val_full"] - pick["val_full"])
        for loss, pick in out["asha"]["picks"].items()
    }
    out["epoch_ratio"] = round(ratio, 3)
    out["val_gap_points"] = {k: round(v, 2) for k, v in gaps.items()}
    out["goal_met"] = ratio <= 0.5 and all(g <= 0.5 for g in gaps.values())
    print(json.dumps(out, indent=2))
    print(
        f"goal: ASHA epochs <= 0.5 x FIFO's ({ratio:.2f}) and picks within 0.5 points of FIFO's "
        f"on validation ({', '.join(f'{k} {v:+.2f}' for k, v in gaps.items())}): "
        f"{'met' if out['goal_met'] else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
