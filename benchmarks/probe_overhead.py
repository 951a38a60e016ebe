"""Probe overhead: the quickstart training loop with TrialProbe on and off, in one process.

    PYTHONPATH=. python benchmarks/probe_overhead.py [--steps 200] [--pairs 3] [--impl fast]

Model small_cnn, Fashion-MNIST subset, loss hal, B=256, d=64 (suites/quickstart.yaml); every
run trains the same `--steps` steps from the same initial weights. Runs alternate off/on so
that drift of a shared machine hits both alike. Prints the median wall time of each and the
ratio on/off (goal: <= 1.03 at the default probe settings), and, because a shared machine's
noise can exceed 3%, also the time the probe itself spent measuring (TrialProbe.measuring_ms)
as a fraction of an unprobed run. The first probed run of the process also pays one-time
start-up (torch profiler, FLOP counting of the shape); it is reported separately.
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
) -> tuple[float, float]:
    """Seconds for `steps` training steps (model forward, loss, backward, AdamW), and the
    seconds of it that the probe spent measuring."""
    torch.manual_seed(0)
    model = models.build("small_cnn", in_channels=1, image_size=28, embedding_dim=state["dim"])
    model.load_state_dict(state["model"])
    loss_fn = losses.build(
        "hal", num_classes=splits.num_classes, embedding_dim=state["dim"], impl=state["impl"]
    )
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
    return elapsed, probe.measuring_ms / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=3, help="off/on pairs after the first")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--every-n-steps", type=int, default=50)
    parser.add_argument("--impl", choices=["fast", "reference"], default="fast", help="HAL's")
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
        "impl": args.impl,
        "model": models.build(
            "small_cnn", in_channels=1, image_size=28, embedding_dim=dim
        ).state_dict(),
    }

    def run(enabled: bool) -> tuple[float, float, dict]:
        probe = TrialProbe(every_n_steps=args.every_n_steps, enabled=enabled)
        seconds, measuring = train(splits, state, args.steps, probe, args.batch_size)
        return seconds, measuring, probe.summary()

    train(splits, state, 5, TrialProbe(enabled=False), args.batch_size)  # warm the allocator
    cold_off, cold_on = run(False)[0], run(True)
    off, on = [], []
    for _ in range(args.pairs):
        off.append(run(False)[0])
        on.append(run(True))
    t_off, t_on = statistics.median(off), statistics.median(t for t, _, _ in on)
    measuring = statistics.median(m for _, m, _ in on)
    print(
        f"{args.steps} steps per run, batch {args.batch_size}, probe every {args.every_n_steps}"
        f" steps (warmup 1, repeats 3), torch threads {torch.get_num_threads()}, hal impl "
        f"{args.impl}"
    )
    print(f"probes off: median {t_off:.2f} s  {[round(t, 2) for t in off]}")
    print(f"probes on:  median {t_on:.2f} s  {[round(t, 2) for t, _, _ in on]}")
    print(f"wall ratio on/off (median of {args.pairs} pairs): {t_on / t_off:.3f}  (goal <= 1.03)")
    print(
        f"time the probe spent measuring: {measuring:.3f} s per run = "
        f"{measuring / t_off:.2%} of an unprobed run (warm); first probed run of the process: "
        f"{cold_on[1]:.3f} s = {cold_on[1] / cold_off:.2%} (includes one-time start-up)"
    )
    print(
        "probe summary: "
        + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in on[-1][2].items()
        )
    )


if __name__ == "__main__":
    main()
