"""halbench command line: run, profile, validate, report, compare, reproduce, list.

Exit codes: 0 done (failed trials are rows, not a crash); 2 bad input, one line on stderr naming
the file or field; 1 an internal failure, or a lost cluster head; 3 `compare` found a
regression, `reproduce` a moved number; 130 interrupted, 143 SIGTERM (what finished is written,
and the command says how to resume).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from halbench import __version__
from halbench.commands.args import Parser, csv_list, ints, positive_float, positive_int
from halbench.errors import UserError
from halbench.failures import disk_full_line, first_line
from halbench.run import signals
from halbench.run.loggers import LOGGERS, check_log_to

EXIT_OK, EXIT_INTERNAL, EXIT_USER, EXIT_REGRESSION, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="halbench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"halbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

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
    parser.commands = dict(sub.choices)  # type: ignore[attr-defined]
    return parser


def _add_run_arguments(run: argparse.ArgumentParser) -> None:
    arg = run.add_argument
    arg("suite", type=Path, help="suite YAML file")
    arg("--output", "-o", type=Path, help="run directory (default reports/<suite>/<UTC time>)")
    arg("--resume", action="store_true", help="finish the run in --output: only missing trials run")
    arg("--max-concurrent", type=positive_int, help="at most N trials at once")
    arg(
        "--address",
        help="existing Ray cluster: 'auto' or host:port "
        "(default $RAY_ADDRESS, else a local Ray that starts and stops with the run)",
    )
    arg("--num-cpus", type=positive_int, help="CPUs for a local Ray (default: all)")
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
    arg("--datasets", type=csv_list, help="only these of the suite's datasets (comma-separated)")
    arg("--no-report", action="store_true", help="write parquet files only")
    arg(
        "--dry-run",
        action="store_true",
        help="list the trials and estimate the run's cost on this machine; write nothing",
    )
    arg(
        "--log-to",
        action="append",
        choices=list(LOGGERS),
        help="also log every trial's results with Ray Tune's logger for this tracker, under "
        "the run directory, offline (repeatable)",
    )


def _add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    arg = parser.add_argument
    arg("suite", nargs="?", type=Path, help="profile suite YAML (default: built-in sweep)")
    arg("--losses", type=csv_list, help="comma-separated loss labels or names (default: suite's)")
    arg("--batch-sizes", type=ints, help="comma-separated batch sizes B")
    arg("--dims", type=ints, help="comma-separated embedding dimensions d")
    arg("--classes", type=ints, help="comma-separated numbers of classes C")
    arg("--device", choices=["cpu", "cuda"], help="where to run the calls (default: suite, cpu)")
    arg("--warmup", type=int, help="untimed calls before timing (default: suite, 3)")
    arg("--repeats", type=int, help="timed calls per point (default: suite, 10)")
    arg("--address", help="existing Ray cluster (default $RAY_ADDRESS, else a local Ray)")
    arg("--no-ray", action="store_true", help="run in this process, not one Ray task per loss")
    arg("--no-report", action="store_true", help="write profile.parquet only")
    arg("--output", "-o", type=Path, required=True, help="output directory")
    arg("--resume", action="store_true", help="finish an interrupted profile in --output")
    arg(
        "--point-timeout",
        type=positive_float,
        metavar="SECONDS",
        help="seconds of timing per point; a point past it is a row with status 'timeout'",
    )


def _add_validate_arguments(parser: argparse.ArgumentParser) -> None:
    arg = parser.add_argument
    arg("suite", type=Path, help="suite YAML file")
    arg(
        "--address",
        help="check resources against this Ray cluster (default: this machine, as a local run)",
    )
    arg("--num-cpus", type=positive_int, help="CPUs a local Ray would get (default: all)")
    arg("--num-gpus", type=int, help="GPUs a local Ray would get (default: all visible)")


def _cmd_validate(args: argparse.Namespace) -> int:
    from halbench.commands.validate import validate

    print(validate(args.suite, args.address, args.num_cpus, args.num_gpus))
    return EXIT_OK


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
    from halbench.run.rundir import default_output
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
    log_to = tuple(dict.fromkeys(args.log_to or ()))
    if log_to and args.no_ray:
        raise UserError("--log-to attaches Ray Tune's loggers: it needs Ray (drop --no-ray)")
    check_log_to(log_to)
    out_dir = (args.output or default_output(suite)).resolve()  # named in a stop's line
    options = RunOptions(
        output=out_dir,
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
        log_to=log_to,
    )
    try:
        summary = run_suite(suite, args.suite, options)
    except Exception as err:  # noqa: BLE001 - a full disk anywhere is one line, resumable
        if (line := disk_full_line(err, out_dir)) is None:
            raise
        raise UserError(f"{line}{_resume(args, out_dir, '; ')}") from None
    if stopped := signals.stop_line():
        print(f"halbench: {stopped}{_resume(args, out_dir, '; ')}", file=sys.stderr)
        return signals.exit_code()
    _report(summary.out_dir, args)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.statuses.items())) or "no trials"
    print(f"[halbench] {summary.out_dir}: {counts}", file=sys.stderr)
    if summary.interrupted:
        print(f"[halbench] interrupted{_resume(args, out_dir, '; ')}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


def _resume(args: argparse.Namespace, out_dir: Path, sep: str) -> str:
    """'<sep>finish with: halbench run ... --resume' once the run directory holds its suite."""
    if not (out_dir / "suite.yaml").is_file():
        return ""
    return f"{sep}finish with: halbench run {args.suite} --output {out_dir} --resume"


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
    from halbench.commands.profile import load_sweep, resume_command
    from halbench.run.options import RunOptions
    from halbench.run.profile import run_profile

    suite = load_sweep(args)
    options = RunOptions(
        output=args.output,
        resume=args.resume,
        address=_address(args),
        use_ray=not args.no_ray,
        point_timeout=args.point_timeout,
    )
    try:
        path = run_profile(suite, args.suite, options)
    except KeyboardInterrupt:  # every finished point is kept: say how to finish
        print(f"[halbench] interrupted; finish with: {resume_command(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    _report(path.parent, args)
    print(path)
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from halbench.report import commands as report_commands

    report_commands.report_main(args)
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    from halbench.report import commands as report_commands

    return EXIT_REGRESSION if report_commands.compare_main(args) else EXIT_OK


def _cmd_list(args: argparse.Namespace) -> int:
    from halbench.commands.listing import listing

    print(listing(args.kind, args.pattern))
    return EXIT_OK


_COMMANDS = {
    "run": _cmd_run,
    "profile": _cmd_profile,
    "report": _cmd_report,
    "compare": _cmd_compare,
    "list": _cmd_list,
    "validate": _cmd_validate,
}


def main(argv: Sequence[str] | None = None) -> int:
    signals.reset()
    signals.install_sigterm()  # SIGTERM (Slurm, Kubernetes) stops a command like Ctrl-C
    try:
        args = build_parser().parse_args(argv)
        return (getattr(args, "handler", None) or _COMMANDS[args.command])(args)
    except UserError as err:
        print(f"halbench: error: {err}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        if stopped := signals.stop_line():
            print(f"halbench: {stopped}", file=sys.stderr)
            return signals.exit_code()
        print("halbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as err:  # a full disk or read-only path hit outside halbench's writers
        from halbench.results.io import write_error  # polars: only on this path

        if not isinstance(known := write_error(Path(err.filename or "."), err), UserError):
            return _internal_error()
        print(f"halbench: error: {known}", file=sys.stderr)
        return EXIT_USER
    except Exception:  # noqa: BLE001 - an internal failure: show the traceback, exit 1
        return _internal_error()


def _internal_error() -> int:
    traceback.print_exc()
    print("halbench: internal error (this is a bug; the traceback is above)", file=sys.stderr)
    return EXIT_INTERNAL


def main_exit() -> None:
    """Console-script entry point."""
    code = main()
    if signals.hard_exit_requested():  # a hung upload or a dead GCS would hold the exit
        signals.hard_exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main_exit()
