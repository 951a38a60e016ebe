"""halbench command line: run, profile, validate, report, compare, reproduce, list.

Exit codes: 0 done (failed trials are rows, not a crash); 2 bad input, one line on stderr naming
the file or field; 1 an internal failure; 3 `compare` found a regression, `reproduce` a moved
number; 130 interrupted (what finished is written, and the command says how to resume).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from halbench import __version__
from halbench.errors import UserError
from halbench.failures import first_line

EXIT_OK, EXIT_INTERNAL, EXIT_USER, EXIT_REGRESSION, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class _Parser(argparse.ArgumentParser):
    """argparse, but usage mistakes are one line and exit 2 like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="halbench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"halbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    _add_run_arguments(sub.add_parser("run", help="run a suite: one Ray Tune trial per grid point"))
    _add_profile_arguments(
        sub.add_parser("profile", help="sweep loss calls alone: FLOPs, time, memory")
    )

    from halbench.report import commands as report_commands

    report_commands.add_report_arguments(
        sub.add_parser("report", help="(re)build report.md and report.html from run directories")
    )
    report_commands.add_compare_arguments(
        sub.add_parser("compare", help="what changed between two runs; exit 3 on a regression")
    )
    report_commands.add_reproduce_parser(sub)  # its handler: rerun and check; exit 0 or 3

    _add_validate_arguments(
        sub.add_parser("validate", help="check a suite without training: exit 0 valid, 2 not")
    )

    lst = sub.add_parser("list", help="list registered losses, datasets or models")
    lst.add_argument("kind", choices=["losses", "datasets", "models"])
    lst.add_argument("pattern", nargs="?", default="*", help="wildcard filter, e.g. 'nca*'")
    return parser


def _add_run_arguments(run: argparse.ArgumentParser) -> None:
    arg = run.add_argument
    arg("suite", type=Path, help="suite YAML file")
    arg("--output", "-o", type=Path, help="run directory (default reports/<suite>/<UTC time>)")
    arg("--resume", action="store_true", help="finish the run in --output: only missing trials run")
    arg("--max-concurrent", type=_positive_int, help="at most N trials at once")
    arg(
        "--address",
        help="existing Ray cluster: 'auto' or host:port "
        "(default $RAY_ADDRESS, else a local Ray that starts and stops with the run)",
    )
    arg("--num-cpus", type=_positive_int, help="CPUs for a local Ray (default: all)")
    arg("--num-gpus", type=int, help="GPUs for a local Ray (default: all visible)")
    arg(
        "--dashboard",
        action="store_true",
        help="start the Ray dashboard of a local run on 127.0.0.1 and print its URL",
    )
    arg("--ray-temp-dir", type=Path, help="session directory of a local Ray (default /tmp/ray)")
    arg(
        "--storage",
        help="Tune's storage path or URI; on a multi-node cluster a shared "
        "filesystem or cloud URI (default <output>/ray)",
    )
    arg("--no-ray", action="store_true", help="run trials one by one in this process (debugging)")
    arg("--datasets", type=_csv, help="only these of the suite's datasets (comma-separated)")
    arg("--no-report", action="store_true", help="write parquet files only")
    arg(
        "--dry-run",
        action="store_true",
        help="list the trials and estimate the run's cost on this machine; write nothing",
    )


def _add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    arg = parser.add_argument
    arg("suite", nargs="?", type=Path, help="profile suite YAML (default: built-in sweep)")
    arg("--losses", type=_csv, help="comma-separated loss labels or names (default: the suite's)")
    arg("--batch-sizes", type=_ints, help="comma-separated batch sizes B")
    arg("--dims", type=_ints, help="comma-separated embedding dimensions d")
    arg("--classes", type=_ints, help="comma-separated numbers of classes C")
    arg("--device", choices=["cpu", "cuda"], help="where to run the calls (default: suite, cpu)")
    arg("--warmup", type=int, help="untimed calls before timing (default: suite, 3)")
    arg("--repeats", type=int, help="timed calls per point (default: suite, 10)")
    arg("--address", help="existing Ray cluster (default $RAY_ADDRESS, else a local Ray)")
    arg("--no-ray", action="store_true", help="run in this process, not one Ray task per loss")
    arg("--no-report", action="store_true", help="write profile.parquet only")
    arg("--output", "-o", type=Path, required=True, help="output directory")


def _add_validate_arguments(parser: argparse.ArgumentParser) -> None:
    arg = parser.add_argument
    arg("suite", type=Path, help="suite YAML file")
    arg(
        "--address",
        help="check resources against this Ray cluster (default: this machine, as a local run)",
    )
    arg("--num-cpus", type=_positive_int, help="CPUs a local Ray would get (default: all)")
    arg("--num-gpus", type=int, help="GPUs a local Ray would get (default: all visible)")


def _cmd_validate(args: argparse.Namespace) -> int:
    """Everything knowable without training, in seconds: the checks `run` makes before Ray."""
    from halbench.run import cluster
    from halbench.run.options import RunOptions
    from halbench.run.runner import preflight
    from halbench.suite import load_suite

    suite = load_suite(args.suite)
    if args.num_gpus is not None and args.num_gpus < 0:
        raise UserError(f"--num-gpus: expected a non-negative integer, got {args.num_gpus}")
    options = RunOptions(address=args.address, num_cpus=args.num_cpus, num_gpus=args.num_gpus)
    preflight(suite, args.suite, options)
    if args.address:
        capacity = cluster.cluster_capacity(args.address)
        resources = cluster.trial_resources(suite.resources)
        cluster.check_capacity(resources, capacity, args.suite, f"the cluster at {args.address}")
    print(_validate_summary(suite, args.suite))
    return EXIT_OK


def _validate_summary(suite: Any, path: Path) -> str:
    """Trials, groups and training epochs, as the run would plan them (tuned suites too)."""
    from halbench.run.dryrun import plan

    planned = plan(suite, suite.trials())
    trials = sum(p.count for p in planned)
    losses, epochs = len(suite.losses), sum(p.count * p.epochs for p in planned)
    return (
        f"{path}: valid: suite {suite.name!r}, {trials} trial{'s' * (trials != 1)} of "
        f"{losses} loss{'es' * (losses != 1)}, at most {epochs} training epochs in all; "
        "`halbench run --dry-run` estimates the time"
    )


def _address(args: argparse.Namespace) -> str | None:
    if args.no_ray and args.address:
        raise UserError("--no-ray and --address exclude each other")
    return None if args.no_ray else args.address or os.environ.get("RAY_ADDRESS") or None


def _report(out_dir: Path, args: argparse.Namespace) -> None:
    """Build the report of a finished run; a failure is a warning (the results are on disk)."""
    if args.no_report:
        return
    from halbench.report import build_report
    from halbench.run.rundir import fault_point

    fault_point("report")
    try:
        paths = build_report([out_dir], out_dir)
    except Exception as err:  # noqa: BLE001 - results are safe on disk; the report can be rebuilt
        print(
            f"[halbench] warning: report not built ({first_line(err)}); "
            f"rebuild with: halbench report {out_dir}",
            file=sys.stderr,
        )
        return
    for path in paths.values():
        print(f"[halbench] wrote {path}", file=sys.stderr)


def _cmd_run(args: argparse.Namespace) -> int:
    from halbench.run.options import RunOptions
    from halbench.run.runner import run_suite
    from halbench.suite import load_suite

    suite = load_suite(args.suite)
    if args.resume and args.output is None:
        raise UserError("--resume needs --output DIR: the run directory to finish")
    address = _address(args)
    if address and args.ray_temp_dir:
        raise UserError("--ray-temp-dir is for a local Ray; a cluster sets its own (ray start)")
    if args.num_gpus is not None and args.num_gpus < 0:
        raise UserError(f"--num-gpus: expected a non-negative integer, got {args.num_gpus}")
    if args.dry_run:
        return _dry_run(suite, args)
    options = RunOptions(
        output=args.output,
        resume=args.resume,
        max_concurrent=args.max_concurrent,
        address=address,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        dashboard=args.dashboard,
        use_ray=not args.no_ray,
        datasets=tuple(args.datasets) if args.datasets else None,
        ray_temp_dir=args.ray_temp_dir.resolve() if args.ray_temp_dir else None,
        storage=args.storage,
    )
    summary = run_suite(suite, args.suite, options)
    _report(summary.out_dir, args)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.statuses.items())) or "no trials"
    print(f"[halbench] {summary.out_dir}: {counts}", file=sys.stderr)
    if summary.interrupted:
        print(
            f"[halbench] interrupted; finish with: halbench run {args.suite} "
            f"--output {summary.out_dir} --resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return EXIT_OK


def _dry_run(suite: object, args: argparse.Namespace) -> int:
    """`run --dry-run`: the trials and their estimated cost here; no run directory."""
    from halbench.run.dryrun import dry_run
    from halbench.run.options import RunOptions

    options = RunOptions(
        max_concurrent=args.max_concurrent,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        datasets=tuple(args.datasets) if args.datasets else None,
    )
    dry_run(suite, options)  # type: ignore[arg-type]
    return EXIT_OK


def _cmd_profile(args: argparse.Namespace) -> int:
    from halbench.run.options import RunOptions
    from halbench.run.profile import SweepOverrides, apply_overrides, run_profile
    from halbench.suite.profile import load_profile_suite

    overrides = SweepOverrides(
        losses=args.losses,
        batch_sizes=args.batch_sizes,
        dims=args.dims,
        classes=args.classes,
        device=args.device,
        warmup=args.warmup,
        repeats=args.repeats,
    )
    loaded = load_profile_suite(args.suite)
    suite = apply_overrides(loaded, overrides)
    _say_default_classes(loaded, args)
    options = RunOptions(output=args.output, address=_address(args), use_ray=not args.no_ray)
    path = run_profile(suite, args.suite, options)
    _report(path.parent, args)
    print(path)
    return EXIT_OK


def _say_default_classes(loaded: object, args: argparse.Namespace) -> None:
    """Say so when the sweep's class counts C are the defaults, not the user's choice."""
    grid = loaded.grid  # type: ignore[attr-defined]
    if args.classes is None and "num_classes" not in grid.model_fields_set:
        counts = ", ".join(map(str, grid.num_classes))
        where = f"{args.suite} has no grid.num_classes" if args.suite else "no suite file"
        print(
            f"[halbench] profile: {where} and no --classes: adding the default class counts "
            f"C = {counts}",
            file=sys.stderr,
        )


def _cmd_report(args: argparse.Namespace) -> int:
    from halbench.report import commands as report_commands

    report_commands.report_main(args)
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    from halbench.report import commands as report_commands

    return EXIT_REGRESSION if report_commands.compare_main(args) else EXIT_OK


def _cmd_list(args: argparse.Namespace) -> int:
    from halbench import data, losses, models

    module = {"losses": losses, "datasets": data, "models": models}[args.kind]
    names = module.available(args.pattern)
    if not names:
        raise UserError(f"list {args.kind}: nothing matches {args.pattern!r}")
    if args.kind == "losses":
        print(_loss_listing(names))
        print("pml:<ClassName>[:key=value,...]  (any pytorch-metric-learning loss)")
    else:
        print("\n".join(names))
    return EXIT_OK


def _loss_listing(names: list[str]) -> str:
    """Each loss's name on a line of its own, then its parameters with their defaults."""
    import inspect

    from halbench import losses

    lines = []
    for name in names:
        params = []
        for key, default in losses.parameters(name).items():
            if key == "memory_size" and losses.LOSSES.get(name).needs_memory_size:
                params.append("memory_size=<training set size>")
            elif default is inspect.Parameter.empty:
                params.append(f"{key}=<required>")
            else:
                params.append(f"{key}={default!r}")
        lines += [name, f"    {', '.join(params) or '(no parameters)'}"]
    return "\n".join(lines)


_COMMANDS = {
    "run": _cmd_run,
    "profile": _cmd_profile,
    "report": _cmd_report,
    "compare": _cmd_compare,
    "list": _cmd_list,
    "validate": _cmd_validate,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return (getattr(args, "handler", None) or _COMMANDS[args.command])(args)
    except UserError as err:
        print(f"halbench: error: {err}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("halbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as err:
        if (line := _write_failure(err)) is None:
            return _internal_error()
        print(f"halbench: error: {line}", file=sys.stderr)
        return EXIT_USER
    except Exception:  # noqa: BLE001 - an internal failure: show the traceback, exit 1
        return _internal_error()


def _internal_error() -> int:
    traceback.print_exc()
    print("halbench: internal error (this is a bug; the traceback is above)", file=sys.stderr)
    return EXIT_INTERNAL


def _write_failure(err: OSError) -> str | None:
    """A full disk or read-only path hit outside halbench's write helpers (Ray's, pyarrow's)."""
    if err.errno not in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT):
        return None
    where = f"{err.filename}: " if err.filename else ""
    return f"{where}{os.strerror(err.errno)}; what finished is kept (resume with --resume)"


def main_exit() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
