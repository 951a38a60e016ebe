"""`halbench profile`: sweep loss calls alone (no training) over B x d x C.

Writes DIR/profile.parquet (results.PROFILE_SCHEMA, one row per loss x B x d x C), env.json,
a copy of the suite file when one was given, and the report. One Ray task per loss, or all in
this process with --no-ray. A point that does not fit in memory is a row with status 'oom'.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from halbench import results
from halbench.errors import UserError

DEFAULT_LOSSES = ("hal", "al", "nca", "snnl", "proxy_nca", "normface", "softmax")
DEFAULT_BATCH_SIZES = (32, 64, 128, 256, 512, 1024)
DEFAULT_DIMS = (128,)
DEFAULT_CLASSES = (10, 100)
DEFAULT_WARMUP, DEFAULT_REPEATS = 3, 10
DEFAULT_MEMORY_SIZE = 60_000  # memory-bank losses: a Fashion-MNIST-sized training set
SUITE_KEYS = {
    "name", "description", "losses", "batch_sizes", "embedding_dims", "num_classes",
    "memory_size", "device", "warmup", "repeats",
}  # fmt: skip
# Live [B, K] float32 tensors of one forward+backward (K = B, C or the memory size), with room
# to spare: the measured peaks of the built-in losses stay under half of this.
LIVE_MATRICES = 12
OOM_MESSAGES = ("out of memory", "not enough memory", "can't allocate memory")


@dataclass(frozen=True)
class LossSpec:
    name: str
    label: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """A validated sweep."""

    losses: list[LossSpec]
    batch_sizes: list[int]
    dims: list[int]
    classes: list[int]
    memory_size: int
    device: str
    warmup: int
    repeats: int


# ---------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare `halbench profile`'s arguments on its subparser."""
    arg = parser.add_argument
    arg("suite", nargs="?", type=Path, help="profile suite YAML (default: built-in sweep)")
    arg("--losses", type=_names, help="comma-separated loss names (default: the suite's)")
    arg("--batch-sizes", type=_ints, help="comma-separated batch sizes B")
    arg("--dims", type=_ints, help="comma-separated embedding dimensions d")
    arg("--classes", type=_ints, help="comma-separated numbers of classes C")
    arg("--device", choices=["cpu", "cuda"], help="where to run the calls (default: suite, cpu)")
    arg("--warmup", type=int, help=f"untimed calls before timing (default {DEFAULT_WARMUP})")
    arg("--repeats", type=int, help=f"timed calls per point (default {DEFAULT_REPEATS})")
    arg(
        "--no-ray", action="store_true", help="run in this process instead of one Ray task per loss"
    )
    arg("--output", "-o", type=Path, required=True, help="output directory")


def main(args: argparse.Namespace) -> int:
    path = run_profile(
        suite_path=args.suite,
        losses=args.losses,
        batch_sizes=args.batch_sizes,
        dims=args.dims,
        classes=args.classes,
        device=args.device,
        output=args.output,
        use_ray=not args.no_ray,
        warmup=args.warmup,
        repeats=args.repeats,
    )
    print(path)
    return 0


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


# ---------------------------------------------------------------------------------------------
# The sweep


def run_profile(
    *,
    suite_path: Path | None,
    losses: list[str] | None,
    batch_sizes: list[int] | None,
    dims: list[int] | None,
    classes: list[int] | None,
    device: str | None,
    output: Path,
    use_ray: bool,
    warmup: int | None,
    repeats: int | None,
) -> Path:
    """Run the sweep and write DIR/profile.parquet, env.json and the report; returns the parquet.

    Arguments given here override the suite file; None means "the suite's, else the default".
    Bad input raises UserError.
    """
    suite = _read_suite(suite_path)
    plan = _plan(suite, losses, batch_sizes, dims, classes, device, warmup, repeats)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    if suite_path is not None:
        shutil.copyfile(suite_path, output / "suite.yaml")
    env = results.environment()
    # The sweep's hash plays the suite hash's part: the report merges only identical sweeps.
    sweep = json.dumps(dataclasses.asdict(plan), sort_keys=True, default=str)
    env.update(
        profile_device=plan.device,
        suite=suite.get("name", "profile"),
        suite_hash=hashlib.sha256(sweep.encode()).hexdigest()[:12],
        started_at=datetime.now(UTC).isoformat(),
    )
    results.write_json_atomic(output / "env.json", env)
    rows = _run_ray(plan) if use_ray else _run_local(plan)
    path = output / "profile.parquet"
    results.write_parquet_atomic(results.frame(rows, results.PROFILE_SCHEMA), path)
    env["finished_at"] = datetime.now(UTC).isoformat()
    results.write_json_atomic(output / "env.json", env)
    _report(output)
    return path


def _read_suite(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: profile suite file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping with keys {', '.join(sorted(SUITE_KEYS))}")
    unknown = sorted(set(data) - SUITE_KEYS)
    if unknown:
        raise UserError(
            f"{path}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(SUITE_KEYS))}"
        )
    data["_path"] = str(path)
    return data


def _plan(
    suite: dict[str, Any],
    losses: list[str] | None,
    batch_sizes: list[int] | None,
    dims: list[int] | None,
    classes: list[int] | None,
    device: str | None,
    warmup: int | None,
    repeats: int | None,
) -> Plan:
    import torch

    where = suite.get("_path", "profile")
    specs = [_loss_spec(item, where) for item in suite.get("losses", DEFAULT_LOSSES)]
    if losses is not None:
        by_name = {s.label: s for s in specs} | {s.name: s for s in specs}
        specs = [by_name.get(name, LossSpec(name, name)) for name in losses]
    _check_losses(specs, where)
    device = device or suite.get("device", "cpu")
    if device not in ("cpu", "cuda"):
        raise UserError(f"{where}: device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is visible to torch")
    return Plan(
        losses=specs,
        batch_sizes=_sizes(
            "batch_sizes (--batch-sizes)",
            batch_sizes,
            suite.get("batch_sizes"),
            DEFAULT_BATCH_SIZES,
        ),
        dims=_sizes("embedding_dims (--dims)", dims, suite.get("embedding_dims"), DEFAULT_DIMS),
        classes=_sizes(
            "num_classes (--classes)", classes, suite.get("num_classes"), DEFAULT_CLASSES, minimum=2
        ),
        memory_size=_count("memory_size", suite.get("memory_size", DEFAULT_MEMORY_SIZE), 2),
        device=device,
        warmup=_count("warmup", _first(warmup, suite.get("warmup"), DEFAULT_WARMUP), 0),
        repeats=_count("repeats", _first(repeats, suite.get("repeats"), DEFAULT_REPEATS), 1),
    )


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def _loss_spec(item: Any, where: str) -> LossSpec:
    if isinstance(item, str):
        return LossSpec(item, item)
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        extra = set(item) - {"name", "label", "params"}
        params = item.get("params") or {}
        if not extra and isinstance(params, dict):
            return LossSpec(item["name"], str(item.get("label") or item["name"]), dict(params))
    raise UserError(f"{where}: losses: expected a name or {{name, label, params}}, got {item!r}")


def _check_losses(specs: list[LossSpec], where: str) -> None:
    from halbench import losses as registry

    if not specs:
        raise UserError(f"{where}: losses: expected at least one loss")
    for spec in specs:
        try:
            # Building checks the name (pml: plug-ins included) and every parameter up front; a
            # roomy shape, so that limits that depend on the point (C <= d) fail per point.
            registry.build(
                spec.name, num_classes=2, embedding_dim=512, memory_size=64, **spec.params
            )
        except (ValueError, TypeError, ImportError) as exc:
            raise UserError(f"{where}: losses: {exc}") from None
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise UserError(f"{where}: losses: labels must be unique, got {labels}")


def _sizes(
    what: str, given: Sequence[int] | None, suite: Any, default: Sequence[int], minimum: int = 1
) -> list[int]:
    values = _first(given, suite, default)
    if (
        not isinstance(values, list | tuple)
        or not values
        or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in values)
    ):
        raise UserError(f"{what}: expected a non-empty list of integers >= {minimum}, got {values}")
    return sorted(set(values))


def _count(what: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{what}: expected an integer >= {minimum}, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------
# Running: one loss at a time, locally or as Ray tasks


def _run_local(plan: Plan) -> list[dict[str, Any]]:
    rows = []
    for spec in plan.losses:
        rows.extend(profile_loss(spec, plan, progress=_say))
    return rows


def _run_ray(plan: Plan) -> list[dict[str, Any]]:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            object_store_memory=200 * 1024**2,  # rows only; do not reserve a third of the RAM
        )
    try:
        # A whole GPU per task: two losses timed on one GPU at once would slow each other.
        task = ray.remote(num_cpus=1, num_gpus=1 if plan.device == "cuda" else 0)(profile_loss)
        refs = {spec.label: task.remote(spec, plan) for spec in plan.losses}
        rows = []
        for spec in plan.losses:
            try:
                done = ray.get(refs[spec.label])
            except ray.exceptions.RayError as exc:  # the worker died (e.g. killed for memory)
                status = "oom" if isinstance(exc, ray.exceptions.OutOfMemoryError) else "error"
                error = _one_line(exc)
                done = [_row(spec, plan, *p, status=status, error=error) for p in _grid(plan)]
            _say(f"profile: {spec.label}: {len(done)} points")
            rows.extend(done)
        return rows
    finally:
        if started_here:
            ray.shutdown()


def _grid(plan: Plan) -> list[tuple[int, int, int]]:
    return [(b, d, c) for d in plan.dims for c in plan.classes for b in plan.batch_sizes]


def profile_loss(
    spec: LossSpec, plan: Plan, progress: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """All points of one loss (the unit of a Ray task); failures are rows with a status."""
    import torch

    device = torch.device(plan.device)
    if device.type == "cpu":
        # One thread in both modes, so that --no-ray and Ray tasks (num_cpus=1) time the same.
        torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    rows = []
    memory = _memory_size(spec, plan)
    for b, d, c in _grid(plan):
        shortfall = _memory_shortfall(b, d, c, memory, device)
        if shortfall:
            rows.append(_row(spec, plan, b, d, c, status="oom", error=shortfall))
        else:
            rows.append(_profile_point(spec, plan, b, d, c, memory, device, generator))
        if progress:
            row = rows[-1]
            detail = f"{row['time_fwdbwd_ms']:.3g} ms" if row["status"] == "ok" else row["status"]
            progress(f"profile: {spec.label} B={b} d={d} C={c}: {detail}")
    return rows


def _profile_point(
    spec: LossSpec, plan: Plan, b: int, d: int, c: int, memory: int, device: Any, generator: Any
) -> dict[str, Any]:
    import torch

    from halbench import losses as registry
    from halbench.probes import profile_loss_call

    try:
        loss = registry.build(
            spec.name, num_classes=c, embedding_dim=d, memory_size=memory or None, **spec.params
        ).to(device)
        analytic = _analytic(loss, b, d, c, memory, device.type)
        embeddings = torch.randn(b, d, generator=generator).to(device)
        labels = torch.randint(0, c, (b,), generator=generator).to(device)
        indices = None
        if memory:
            if b > memory:
                raise ValueError(f"batch size {b} > memory_size {memory}")
            indices = torch.randperm(memory, generator=generator)[:b].to(device)
        measured = profile_loss_call(
            loss, embeddings, labels, warmup=plan.warmup, repeats=plan.repeats, indices=indices
        )
    except Exception as exc:  # noqa: BLE001 - a failed point is a row, never a lost sweep
        if device.type == "cuda":
            torch.cuda.empty_cache()
        oom = isinstance(exc, torch.OutOfMemoryError) or any(m in str(exc) for m in OOM_MESSAGES)
        return _row(spec, plan, b, d, c, status="oom" if oom else "error", error=_one_line(exc))
    return {
        **_row(spec, plan, b, d, c, status="ok", error=None),
        **measured,
        "flops_analytic_fwd": analytic,
    }


def _analytic(loss: Any, b: int, d: int, c: int, memory: int, device_type: str) -> float | None:
    try:
        return float(loss.flops(b, d, c, memory, device_type=device_type)["total"])
    except NotImplementedError:
        return None


def _memory_size(spec: LossSpec, plan: Plan) -> int:
    """The memory bank size for losses that have one, else 0."""
    from halbench import losses as registry

    if spec.name.startswith("pml:"):  # plug-in losses are not in the registry; none has a bank
        return 0
    return plan.memory_size if registry.LOSSES.get(spec.name).needs_memory_size else 0


def _row(
    spec: LossSpec, plan: Plan, b: int, d: int, c: int, *, status: str, error: str | None
) -> dict[str, Any]:
    return {
        "loss": spec.label,
        "loss_name": spec.name,
        "loss_params": json.dumps(spec.params, sort_keys=True),
        "batch_size": b,
        "embedding_dim": d,
        "num_classes": c,
        "memory_size": _memory_size(spec, plan),
        "device": plan.device,
        "status": status,
        "error": error,
        "unsupported_ops": [],
    }


def _memory_shortfall(b: int, d: int, c: int, memory: int, device: Any) -> str | None:
    """Why this point cannot fit (a pre-check, so that the sweep never swaps the machine)."""
    k = max(b, c, memory)
    need = 4 * (LIVE_MATRICES * b * k + 4 * (b + c + memory) * d)
    free = available_memory(device)
    if free is not None and need > free:
        return f"skipped: estimated {need / 2**30:.2f} GiB > {free / 2**30:.2f} GiB available"
    return None


def available_memory(device: Any) -> int | None:
    """Bytes free for new tensors on the device (None when unknown)."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _report(output: Path) -> None:
    """Build report.md/html; a missing or failing report package is a warning, not a crash."""
    try:
        from halbench.report import build_report

        build_report([output], output)
    except Exception as exc:  # noqa: BLE001 - profile.parquet is written; the report can be rebuilt
        _say(
            f"halbench profile: warning: report not built ({_one_line(exc)}); "
            f"run `halbench report {output}` to retry"
        )
