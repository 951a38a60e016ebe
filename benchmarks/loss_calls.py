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
Each contender is a benchmark (benchmarks/harness.py: params, setup, function) timed by
halbench's one harness (probes/timing.py): each sample is the mean of enough back-to-back calls
to fill --min-time seconds, after --warmup calls; contenders are interleaved within each of
--repeats rounds so that load from other processes hits all of them alike. Times are per-call
medians over the rounds; ratios are medians of the per-round ratios. On CUDA each sample is
bracketed by CUDA events after a device synchronize. On a shared CPU, `--clock cpu --threads 1`
times the work without the waits for other processes.
Goals: nca / pml_nca <= 1.0; hal / floor <= 1.3 at B >= 256 (HAL / floor_cm is printed
beside it).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import harness  # benchmarks/harness.py, beside this script
import torch
import torch.nn.functional as F
from pytorch_metric_learning import distances
from pytorch_metric_learning import losses as pml_losses

from halbench import losses
from halbench.probes import device_name

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def inputs(batch: int, dim: int, classes: int, device: str) -> tuple[torch.Tensor, ...]:
    """Embeddings x (a leaf that requires grad), labels y and a weight W [C, d]: the same values
    for every contender at a point (seeded)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, dim, generator=g).to(device).requires_grad_(True)
    y = torch.randint(0, classes, (batch,), generator=g).to(device)
    weight = torch.randn(classes, dim, generator=g).to(device).requires_grad_(True)
    return x, y, weight


def fwd_bwd(state: tuple[LossFn, torch.Tensor, torch.Tensor]) -> None:
    """The timed call: one forward and backward; the input's gradient is reset so it never
    accumulates."""
    loss_fn, x, y = state
    x.grad = None
    loss_fn(x, y).backward()


def contender(
    name: str, build: Callable[..., LossFn], params: dict[str, list]
) -> harness.Benchmark:
    """A benchmark whose setup builds the loss ``build(weight, **point)`` on the point's inputs."""

    def setup(batch: int, dim: int, classes: int, device: str, impl: str) -> Any:
        x, y, weight = inputs(batch, dim, classes, device)
        loss_fn = build(weight=weight, classes=classes, dim=dim, device=device, impl=impl)
        return loss_fn, x, y

    return harness.Benchmark(name, setup, fwd_bwd, params)


def halbench_loss(name: str) -> Callable[..., LossFn]:
    def build(*, classes: int, dim: int, device: str, impl: str, **_: Any) -> LossFn:
        return losses.build(name, num_classes=classes, embedding_dim=dim, impl=impl).to(device)

    return build


def floor(*, weight: torch.Tensor, **_: Any) -> LossFn:
    return lambda x, y: F.cross_entropy(x @ weight.T, y)


def floor_cm(*, weight: torch.Tensor, **_: Any) -> LossFn:
    return lambda x, y: F.cross_entropy((weight @ x.T).unsqueeze(0), y.unsqueeze(0))


def pml_nca(*, device: str, **_: Any) -> LossFn:
    distance = distances.LpDistance(power=2, normalize_embeddings=False)
    return pml_losses.NCALoss(distance=distance).to(device)


def benchmarks(params: dict[str, list]) -> list[harness.Benchmark]:
    builders = {
        "hal": halbench_loss("hal"),
        "floor": floor,
        "floor_cm": floor_cm,
        "nca": halbench_loss("nca"),
        "pml_nca": pml_nca,
    }
    return [contender(name, build, params) for name, build in builders.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 128, 512])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--impl", choices=["fast", "reference"], default="fast")
    harness.timing_arguments(parser)
    args = parser.parse_args()
    options = harness.timing_options(args)
    params = {
        "batch": args.batch_sizes,
        "dim": args.dims,
        "classes": [args.classes],
        "device": [args.device],
        "impl": [args.impl],
    }
    print(
        f"# torch {torch.__version__}, device {device_name(options['device'])}, "
        f"threads {torch.get_num_threads()}, C={args.classes}, impl {args.impl}, fp32, "
        f"forward+backward, {args.clock} clock, median of {args.repeats}"
    )
    header = (
        f"{'B':>5} {'d':>4} {'hal ms':>9} {'floor ms':>9} {'nca ms':>9} {'pml_nca ms':>10}"
        f" {'HAL/NCA':>8} {'NCA/pml':>8} {'HAL/floor':>9} {'HAL/floor_cm':>12}"
    )
    print(header)
    worst_nca, worst_hal, worst_cm = 0.0, 0.0, 0.0
    for case in harness.run(benchmarks(params), **options):
        batch, dim = case.point["batch"], case.point["dim"]
        nca_ratio, hal_ratio = case.ratio("nca", "pml_nca"), case.ratio("hal", "floor")
        cm_ratio = case.ratio("hal", "floor_cm")
        worst_nca = max(worst_nca, nca_ratio)
        if batch >= 256:
            worst_hal, worst_cm = max(worst_hal, hal_ratio), max(worst_cm, cm_ratio)
        print(
            f"{batch:>5} {dim:>4} {case.ms('hal'):>9.3f} {case.ms('floor'):>9.3f}"
            f" {case.ms('nca'):>9.3f} {case.ms('pml_nca'):>10.3f}"
            f" {case.ratio('hal', 'nca'):>8.3f} {nca_ratio:>8.3f} {hal_ratio:>9.3f}"
            f" {cm_ratio:>12.3f}",
            flush=True,
        )
    print(f"# worst NCA/pml {worst_nca:.3f} (goal <= 1.0)")
    print(f"# worst HAL/floor at B >= 256 {worst_hal:.3f} (goal <= 1.3)")
    print(f"# worst HAL/floor_cm at B >= 256 {worst_cm:.3f} (no goal; the stricter floor)")


if __name__ == "__main__":
    main()
