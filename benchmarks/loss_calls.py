"""Forward+backward time of one loss call: HAL and NCA against their baselines.

    PYTHONPATH=. python benchmarks/loss_calls.py [--batch-sizes 64 256 1024 4096]
        [--dims 64 128 512] [--classes 10] [--device cpu|cuda] [--threads 1]
        [--impl fast|reference]

Contenders per (B, d), C classes, fp32:
  hal        halbench.losses "hal" (B x C x d: cosine logits, cross-entropy)
  floor      bare F.cross_entropy(x @ W.T, y), same shapes: the floor for a B x C x d loss
  floor_cm   the same bare loss with its logits stored class-major, [C, B] = W @ x.T, the
             layout HAL uses on CPU for C <= 32 (losses/kernels.py): on CPU, log_softmax over a
             short last dimension is slow, so `floor` alone would flatter HAL there. HAL /
             floor_cm is the stricter ratio: what HAL's normalizations cost on top of the
             fastest bare loss
  nca        halbench.losses "nca" (in-batch, squared L2, B x B x d)
  (hal and nca run with --impl: "fast", the kernels of losses/kernels*.py, by default, or
  "reference", the readable formulas of their loss files)
  pml_nca    pytorch-metric-learning NCALoss with the same distance (LpDistance(power=2,
             normalize_embeddings=False)), so both compute the same value
Each sample is the mean of enough back-to-back calls to fill --min-time seconds, after
--warmup calls; contenders are interleaved within each of --repeats rounds so that load from
other processes hits all of them alike. Times are per-call medians over the rounds; ratios are
medians of the per-round ratios. On CUDA the device is synchronized around each sample. On a
shared CPU, `--clock cpu --threads 1` times the work without the waits for other processes.
Goals: nca / pml_nca <= 1.0; hal / floor <= 1.3 at B >= 256 (HAL / floor_cm is printed
beside it).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from halbench import losses

Call = Callable[[], None]


def fwd_bwd(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x, y) -> Call:
    """One forward and backward call; the input's gradient is reset so it never accumulates."""

    def call() -> None:
        x.grad = None
        loss_fn(x, y).backward()

    return call


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def seconds_per_call(call: Call, number: int, device: torch.device, clock: str) -> float:
    now = CLOCKS[clock]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = now()
    for _ in range(number):
        call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (now() - start) / number


def measure(
    calls: dict[str, Call], args: argparse.Namespace, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per call of each contender, one sample per repeat, interleaved."""
    numbers = {}
    for name, call in calls.items():
        for _ in range(args.warmup):
            call()
        once = seconds_per_call(call, 1, device, args.clock)
        numbers[name] = max(1, math.ceil(args.min_time / max(once, 1e-7)))
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.repeats):
        for name, call in calls.items():
            samples[name].append(seconds_per_call(call, numbers[name], device, args.clock))
    return samples


def ratio(samples: dict[str, list[float]], top: str, bottom: str) -> float:
    """Median of the per-repeat ratios: paired samples cancel slow drifts in machine load."""
    return statistics.median(a / b for a, b in zip(samples[top], samples[bottom], strict=True))


def contenders(
    batch: int, dim: int, classes: int, device: torch.device, impl: str = "fast"
) -> dict[str, Call]:
    from pytorch_metric_learning import distances
    from pytorch_metric_learning import losses as pml_losses

    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, dim, generator=g).to(device).requires_grad_(True)
    y = torch.randint(0, classes, (batch,), generator=g).to(device)
    hal = losses.build("hal", num_classes=classes, embedding_dim=dim, impl=impl).to(device)
    nca = losses.build("nca", num_classes=classes, embedding_dim=dim, impl=impl).to(device)
    pml_nca = pml_losses.NCALoss(
        distance=distances.LpDistance(power=2, normalize_embeddings=False)
    ).to(device)
    weight = torch.randn(classes, dim, generator=g).to(device).requires_grad_(True)
    return {
        "hal": fwd_bwd(hal, x, y),
        "floor": fwd_bwd(lambda x, y: F.cross_entropy(x @ weight.T, y), x, y),
        "floor_cm": fwd_bwd(
            lambda x, y: F.cross_entropy((weight @ x.T).unsqueeze(0), y.unsqueeze(0)), x, y
        ),
        "nca": fwd_bwd(nca, x, y),
        "pml_nca": fwd_bwd(pml_nca, x, y),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 128, 512])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--impl", choices=["fast", "reference"], default="fast")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.02, help="seconds per measurement")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="cpu: process CPU time, which leaves out time other processes take on a shared "
        "machine (CPU device only; with --threads 1 it equals the call's latency)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    if args.clock == "cpu" and device.type != "cpu":
        parser.error("--clock cpu measures host CPU time; use it with --device cpu")
    print(
        f"# torch {torch.__version__}, device {name}, threads {torch.get_num_threads()}, "
        f"C={args.classes}, impl {args.impl}, fp32, forward+backward, {args.clock} clock, "
        f"median of {args.repeats}"
    )
    header = (
        f"{'B':>5} {'d':>4} {'hal ms':>9} {'floor ms':>9} {'nca ms':>9} {'pml_nca ms':>10}"
        f" {'HAL/NCA':>8} {'NCA/pml':>8} {'HAL/floor':>9} {'HAL/floor_cm':>12}"
    )
    print(header)
    worst_nca, worst_hal, worst_cm = 0.0, 0.0, 0.0
    for batch in args.batch_sizes:
        for dim in args.dims:
            samples = measure(contenders(batch, dim, args.classes, device, args.impl), args, device)
            t = {name: statistics.median(values) for name, values in samples.items()}
            nca_ratio, hal_ratio = ratio(samples, "nca", "pml_nca"), ratio(samples, "hal", "floor")
            worst_nca = max(worst_nca, nca_ratio)
            cm_ratio = ratio(samples, "hal", "floor_cm")
            if batch >= 256:
                worst_hal, worst_cm = max(worst_hal, hal_ratio), max(worst_cm, cm_ratio)
            print(
                f"{batch:>5} {dim:>4} {t['hal'] * 1e3:>9.3f} {t['floor'] * 1e3:>9.3f}"
                f" {t['nca'] * 1e3:>9.3f} {t['pml_nca'] * 1e3:>10.3f}"
                f" {ratio(samples, 'hal', 'nca'):>8.3f} {nca_ratio:>8.3f} {hal_ratio:>9.3f}"
                f" {cm_ratio:>12.3f}",
                flush=True,
            )
    print(f"# worst NCA/pml {worst_nca:.3f} (goal <= 1.0)")
    print(f"# worst HAL/floor at B >= 256 {worst_hal:.3f} (goal <= 1.3)")
    print(f"# worst HAL/floor_cm at B >= 256 {worst_cm:.3f} (no goal; the stricter floor)")


if __name__ == "__main__":
    main()
