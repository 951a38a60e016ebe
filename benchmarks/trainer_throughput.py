"""Training throughput: halbench's trainer against a minimal hand-written PyTorch loop.

    PYTHONPATH=. python benchmarks/trainer_throughput.py [--loss hal --batch-size 256 ...]

Both train the same model (halbench.models), loss (halbench.losses), optimizer (AdamW) and
data (the same uint8 tensors, normalized per batch) for `--epochs` epochs of `--steps` steps.
halbench's number is `images_per_s` of its epoch rows (training time only, k-NN evaluation
excluded); the minimal loop is timed the same way. The first epoch of each is warm-up; the
median over the remaining epochs of `--repeats` interleaved runs is compared.
Goal: halbench / minimal >= 0.95 on CPU.

It then runs the first trial of suites/quickstart.yaml (`--eval-suite`) and prints the k-NN
evaluation's time over the training epoch's (median over epochs of eval_time_s / epoch_time_s).
Goal: at most 0.4. `--only eval` runs that part alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from halbench import data, losses, models
from halbench.suite import parse_suite
from halbench.trial import run_trial


def minimal_loop(args: argparse.Namespace, splits: data.Splits, seed: int) -> list[float]:
    """images/s per epoch of the plainest loop that trains the same thing."""
    torch.manual_seed(seed)
    model = models.build(
        args.model,
        in_channels=splits.in_channels,
        image_size=splits.image_size,
        embedding_dim=args.dim,
    )
    loss_fn = losses.build(args.loss, num_classes=splits.num_classes, embedding_dim=args.dim)
    opt = torch.optim.AdamW([*model.parameters(), *loss_fn.parameters()], lr=1e-3)
    mean = torch.tensor(splits.mean).view(1, -1, 1, 1)
    std = torch.tensor(splits.std).view(1, -1, 1, 1)
    x_all, y_all = splits.train_x, splits.train_y
    rates = []
    for _ in range(args.epochs):
        model.train()
        perm = torch.randperm(len(y_all))
        start = time.perf_counter()
        for i in range(args.steps):
            idx = perm[i * args.batch_size : (i + 1) * args.batch_size]
            x = (x_all[idx].float() / 255 - mean) / std
            loss = loss_fn(model(x), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        rates.append(args.steps * args.batch_size / (time.perf_counter() - start))
    return rates


def halbench_trainer(args: argparse.Namespace, seed: int) -> list[float]:
    """images/s per epoch of run_trial on the same data, model and loss."""
    doc = {
        "name": "throughput",
        "dataset": _dataset(args),
        "model": {"backbone": args.model},
        "losses": [{"name": args.loss}],
        "grid": {"batch_size": [args.batch_size], "embedding_dim": [args.dim], "seed": [seed]},
        "train": {"epochs": args.epochs, "optimizer": "adamw", "lr": 1e-3, "device": "cpu"},
        "eval": {"ks": [1], "batch_size": 2048},
        "probes": {"enabled": False},
    }
    suite = parse_suite(doc, Path("<trainer_throughput>"))
    result = run_trial(suite, suite.trials()[0])
    if result.row["status"] != "ok":
        raise RuntimeError(f"halbench trial failed: {result.row['error']}")
    return [e["images_per_s"] for e in result.epochs]


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


def _dataset(args: argparse.Namespace) -> dict:
    # Exactly `steps` full batches, so that both loops see the same number of images.
    n = args.steps * args.batch_size
    if args.dataset == "synthetic":
        params = {"num_classes": 10, "image_size": 28, "channels": 1}
        return {"name": "synthetic", "train_size": n, "test_size": 256, "params": params}
    return {"name": args.dataset, "train_size": n, "test_size": 256}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic", help="synthetic (28x28x1) or a name")
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--loss", default="hal")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="the first is warm-up")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-suite", type=Path, default=Path("suites/quickstart.yaml"))
    parser.add_argument("--only", choices=["throughput", "eval"], help="run one part only")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is warm-up)")
    torch.set_num_threads(args.threads)
    if args.only != "eval":
        throughput(args)
    if args.only != "throughput":
        found = eval_ratio(args.eval_suite)
        ratio = statistics.median(found["ratios"])
        print(
            f"evaluation / training epoch, {found['trial']} ({args.eval_suite}): {ratio:.3f} "
            f"(per epoch {', '.join(f'{r:.3f}' for r in found['ratios'])}; goal <= 0.4)"
        )
        print(json.dumps({"benchmark": "eval_over_train", **found, "median": ratio}))


def throughput(args: argparse.Namespace) -> None:
    """halbench's trainer against the minimal loop (the first part of this benchmark)."""
    ds = _dataset(args)
    splits = data.load(
        ds["name"], train_size=ds["train_size"], test_size=ds["test_size"], **ds.get("params", {})
    )
    rates: dict[str, list[float]] = {"halbench": [], "minimal": []}
    for seed in range(args.repeats):
        rates["halbench"] += halbench_trainer(args, seed)[1:]
        rates["minimal"] += minimal_loop(args, splits, seed)[1:]
    median = {name: statistics.median(r) for name, r in rates.items()}
    ratio = median["halbench"] / median["minimal"]
    print(
        f"{args.model} + {args.loss}, batch {args.batch_size}, d={args.dim}, "
        f"{args.steps} steps/epoch, {args.threads} threads, dataset {args.dataset}"
    )
    for name, r in rates.items():
        print(f"  {name:10s} {median[name]:8.1f} images/s  (min {min(r):.1f}, max {max(r):.1f})")
    print(f"halbench / minimal loop: {ratio:.3f} (goal >= 0.95)")
    print(
        json.dumps(
            {
                "benchmark": "trainer_throughput",
                "params": vars(args),
                "median_images_per_s": median,
                "ratio": ratio,
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
