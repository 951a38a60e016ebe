"""One short check of the CUDA paths of halbench.probes, for someone with a GPU.

    PYTHONPATH=. python benchmarks/gpu_check.py        (about a minute)

Checks: CUDA-event timing of a known matmul against synchronized wall time; the allocator peak
of a known allocation; NVML memory/utilization/energy while the GPU is busy; profile_loss_call
and TrialProbe end to end on the GPU; a trial's warm-up kept out of its epoch times; a trial's
step time against a bare loop (benchmarks/trainer_throughput.py, bf16 + channels_last); and
four quarter-GPU trials packed on GPU 0 by Ray through `halbench run` (about a minute more).
Prints one line per check and exits 1 if one fails.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import torch
import yaml

from halbench import losses
from halbench.probes import TrialProbe, profile_loss_call
from halbench.probes.memory import peak_memory
from halbench.probes.nvml import NvmlSampler
from halbench.probes.timing import Stopwatch, time_call
from halbench.suite import parse_suite
from halbench.trial import run_trial

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))  # trainer_throughput's comparison, not a twin

FAILED: list[str] = []


def check(name: str, ok: bool, detail: str) -> None:
    print(f"[{'ok' if ok else 'FAIL'}] {name}: {detail}")
    if not ok:
        FAILED.append(name)


def matmul_timing(device: torch.device) -> None:
    n = 8192
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    timing = time_call(lambda: a @ b, device=device, warmup=3, repeats=10)
    walls = []
    for _ in range(5):
        with Stopwatch(device) as watch:
            a @ b
        walls.append(watch.ms)
    wall = sorted(walls)[len(walls) // 2]
    tflops = 2 * n**3 / (timing.median_ms / 1e3) / 1e12
    check(
        "cuda-event timing",
        0.7 < timing.median_ms / wall <= 1.1,
        f"{n}^3 fp32 matmul {timing.median_ms:.3f} ms (IQR {timing.iqr_ms:.3f}) by events, "
        f"{wall:.3f} ms wall with sync; {tflops:.1f} TFLOP/s "
        f"(tf32 {torch.backends.cuda.matmul.allow_tf32})",
    )


def allocator_peak(device: torch.device) -> None:
    size = 256 * 2**20

    def allocate() -> None:
        x = torch.empty(size, dtype=torch.uint8, device=device)
        y = torch.empty(size, dtype=torch.uint8, device=device)
        del x, y

    peak, source = peak_memory(allocate, device=device)
    check("allocator peak", peak == 2 * size, f"{peak} bytes for 2 x {size} ({source})")


def nvml(device: torch.device) -> None:
    sampler = NvmlSampler(device, interval_s=0.1)
    a = torch.randn(8192, 8192, device=device)
    sampler.start()
    start = time.perf_counter()
    while time.perf_counter() - start < 3.0:
        for _ in range(10):
            a @ a
        torch.cuda.synchronize(device)
    readings = sampler.stop()
    mem, util, energy = (readings[k] for k in ("gpu_mem_peak_bytes", "gpu_util_mean", "energy_j"))
    check(
        "nvml",
        mem is not None and mem >= torch.cuda.memory_reserved(device) and util is not None
        and util > 50,
        f"mem peak {mem} B (torch reserved {torch.cuda.memory_reserved(device)}), util mean "
        f"{util} %, energy {energy} J over 3 s; notes {sampler.notes}",
    )  # fmt: skip


def loss_call(device: torch.device) -> None:
    for name in ("hal", "nca"):
        loss = losses.build(name, num_classes=100, embedding_dim=128).to(device)
        emb = torch.randn(1024, 128, device=device)
        labels = torch.randint(0, 100, (1024,), device=device)
        result = profile_loss_call(loss, emb, labels, warmup=3, repeats=20)
        check(
            f"profile_loss_call {name}",
            result["peak_mem_source"] == "cuda_allocator" and not result["unsupported_ops"]
            and result["time_fwdbwd_ms"] > 0,
            ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in result.items()),
        )  # fmt: skip


def trial_probe(device: torch.device) -> None:
    model = torch.nn.Sequential(
        torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 64)
    )
    model = model.to(device)
    loss_fn = losses.build("hal", num_classes=10, embedding_dim=64).to(device)
    optimizer = torch.optim.SGD([*model.parameters(), *loss_fn.parameters()], lr=0.01)
    probe = TrialProbe(every_n_steps=10, device=device)
    probe.start()
    for step in range(60):
        x = torch.randn(256, 512, device=device)
        y = torch.randint(0, 10, (256,), device=device)
        with probe.step(step):
            loss = probe.loss_call(loss_fn, model(x), y, None)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    summary = probe.summary()
    probe.close()
    check(
        "TrialProbe",
        all(summary[k] is not None for k in ("loss_call_ms", "loss_share_of_step",
                                             "gpu_mem_peak_bytes", "gpu_util_mean")),
        ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                  for k, v in summary.items()) + f"; notes {probe.notes}",
    )  # fmt: skip


def _suite_doc(name: str, **train: object) -> dict:
    doc = yaml.safe_load((ROOT / "suites/smoke.yaml").read_text())
    doc["name"] = name
    doc["dataset"].update(train_size=8192, test_size=1024)
    doc["dataset"]["params"].update(image_size=32, channels=3)
    doc["model"] = {"backbone": "resnet18_cifar", "params": {}}
    doc["grid"].update(batch_size=[256], embedding_dim=[64])
    doc["train"].update(epochs=3, device="cuda", amp=True, channels_last=True, **train)
    return doc


def warmup_off_the_clock(device: torch.device) -> None:
    """A ResNet-18 trial: warmup_s holds the first steps, epoch 1 is as fast as the others."""
    doc = _suite_doc("gpu-warmup")
    doc["grid"]["seed"] = [0]
    doc["losses"] = [{"name": "hal"}]
    suite = parse_suite(doc, Path("<gpu_check>"))
    torch.backends.cudnn.benchmark = True
    result = run_trial(suite, suite.trials()[0])
    times = [e["epoch_time_s"] for e in result.epochs]
    row = result.row
    ok = row["status"] == "ok" and row["warmup_s"] > 0
    ok = ok and times[0] <= 1.5 * statistics.median(times[1:])
    check(
        "warm-up off the clock",
        ok,
        f"warmup_s {row['warmup_s']:.3f} s, epoch times {[round(t, 3) for t in times]} s, "
        f"train_time_s {row['train_time_s']:.3f}, {row['steps_per_epoch']} steps/epoch; "
        f"curve {len(row['curve_steps'] or [])} points; status {row['status']} {row['error']}",
    )


def trial_vs_bare(device: torch.device) -> None:
    """trainer_throughput's comparison on CUDA: bf16 + channels_last ResNet-18, B = 256."""
    import trainer_throughput as tt

    args = argparse.Namespace(
        dataset="synthetic", model="resnet18_cifar", loss="hal", batch_size=256, dim=64, steps=30,
        repeats=5, every_n_steps=50, threads=1, amp=True,
    )  # fmt: skip
    found = tt.compare(args, "cuda")
    check(
        "trial/bare step time",
        found["ratio"] <= 1.15,
        f"{found['ratio']:.3f} (trial {found['trial_ms']:.2f} ms/step, bare "
        f"{found['bare_ms']:.2f} ms/step; goal <= 1.15); host syncs per step "
        f"{found['syncs_per_step']:.3f} (the loss's own {found['loss_syncs_per_call']} per call)",
    )


def packed_ray_trials(device: torch.device) -> None:
    """`halbench run` of 4 quarter-GPU trials: all ok, all on GPU 0, 4 at once."""
    doc = _suite_doc("gpu-packed")
    doc["grid"]["seed"] = [0, 1]
    doc["resources"] = {"cpus_per_trial": 1, "gpus_per_trial": 0.25}
    with tempfile.TemporaryDirectory() as tmp:
        suite, out = Path(tmp) / "packed.yaml", Path(tmp) / "out"
        suite.write_text(yaml.safe_dump(doc))
        cmd = [sys.executable, "-m", "halbench.cli", "run", str(suite), "--output", str(out)]
        done = subprocess.run(
            [*cmd, "--no-report", "--num-gpus", "1"], capture_output=True, text=True, timeout=900
        )
        if done.returncode != 0:
            check("packed Ray trials", False, done.stderr.strip().splitlines()[-1:])
            return
        rows = pl.read_parquet(out / "trials.parquet").to_dicts()
    statuses = [r["status"] for r in rows]
    gpus = {r["gpu_ids"] for r in rows}
    most = max((r["max_neighbours"] or 0) for r in rows) + 1
    check(
        "packed Ray trials",
        statuses == ["ok"] * 4 and gpus == {"0"} and most == 4,
        f"statuses {statuses}, GPU ids {sorted(gpus)}, most at once {most}; warmup_s "
        f"{[round(r['warmup_s'] or 0, 2) for r in rows]}, train_time_s "
        f"{[round(r['train_time_s'] or 0, 2) for r in rows]}",
    )


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    device = torch.device("cuda", 0)
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}")  # fmt: skip
    steps = (matmul_timing, allocator_peak, nvml, loss_call, trial_probe, warmup_off_the_clock,
             trial_vs_bare, packed_ray_trials)  # fmt: skip
    for step in steps:
        try:
            step(device)
        except Exception as exc:  # noqa: BLE001 - report every check, then fail
            check(step.__name__, False, f"{type(exc).__name__}: {exc}")
    print("all checks passed" if not FAILED else f"failed: {', '.join(FAILED)}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
