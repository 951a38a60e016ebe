"""Probe overhead: the quickstart training loop with TrialProbe on and off, in one process.

    PYTHONPATH=. python benchmarks/probe_overhead.py [--steps 200] [--pairs 3]

Model small_cnn, Fashion-MNIST subset, loss hal, B=256, d=64 (suites/quickstart.yaml); every
run trains the same `--steps` steps from the same initial weights. Runs alternate off/on so
that drift of a shared machine hits both alike. Prints the median wall time of each and the
ratio on/off (goal: <= 1.03 at the default probe settings). The first probed run of the
process also pays one-time start-up (torch profiler, FLOP counting of the shape); it is
reported separately from the warm ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from halbench import data, losses, models
from halbench.probes import TrialProbe


def train(
    splits: data.Splits, state: dict, steps: int, probe: TrialProbe, batch_size: int
) -> float:
    """Seconds for `steps` training steps (model forward, loss, backward, AdamW)."""
    torch.manual_seed(0)
    model = models.build("small_cnn", in_channels=1, image_size=28, embedding_dim=state["dim"])
    model.load_state_dict(state["model"])
    loss_fn = losses.build("hal", num_classes=splits.num_classes, embedding_dim=state["dim"])
    optimizer = torch.optim.AdamW([*model.parameters(), *loss_fn.parameters()], lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    step = 0
    probe.start()
    start = time.perf_counter()
    while step < steps:
        for x, y, idx in splits.batches(
            "train", batch_size, shuffle=True, augment=False, generator=generator, drop_last=True
        ):
            if step == steps:
                break
            with probe.step(step):
                loss = probe.loss_call(loss_fn, model(x), y, idx)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            step += 1
    elapsed = time.perf_counter() - start
    probe.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=3, help="off/on pairs after the first")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--every-n-steps", type=int, default=50)
    # one thread by default: on a shared machine, OpenMP threads that wait for a descheduled
    # sibling turn sub-millisecond loss calls into 100 ms ones
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    splits = data.load("fashion-mnist", train_size=6000, test_size=100, seed=0)
    dim = 64
    torch.manual_seed(0)
    state = {
        "dim": dim,
        "model": models.build(
            "small_cnn", in_channels=1, image_size=28, embedding_dim=dim
        ).state_dict(),
    }

    def run(enabled: bool) -> float:
        probe = TrialProbe(every_n_steps=args.every_n_steps, enabled=enabled)
        seconds = train(splits, state, args.steps, probe, args.batch_size)
        if enabled:
            run.summary = probe.summary()
        return seconds

    train(splits, state, 5, TrialProbe(enabled=False), args.batch_size)  # warm the allocator
    first_off, first_on = run(False), run(True)
    off, on = [], []
    for _ in range(args.pairs):
        off.append(run(False))
        on.append(run(True))
    t_off, t_on = statistics.median(off), statistics.median(on)
    print(
        f"steps per run {args.steps}, batch {args.batch_size}, probe every "
        f"{args.every_n_steps} steps (warmup 1, repeats 3), torch threads "
        f"{torch.get_num_threads()}"
    )
    print(
        f"first pair (cold, one-time probe start-up included): off {first_off:.2f} s, "
        f"on {first_on:.2f} s, ratio {first_on / first_off:.3f}"
    )
    print(f"probes off: median {t_off:.2f} s  {[round(t, 2) for t in off]}")
    print(f"probes on:  median {t_on:.2f} s  {[round(t, 2) for t in on]}")
    print(f"ratio on/off (warm, median of {args.pairs}): {t_on / t_off:.3f}  (goal <= 1.03)")
    summary = run.summary
    print(
        "probe summary: "
        + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()
        )
    )


if __name__ == "__main__":
    main()
