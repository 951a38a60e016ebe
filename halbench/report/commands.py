"""`halbench report`, `compare` and `reproduce`: their arguments and what they do.

halbench.cli declares the subcommands with these and owns the exit codes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from halbench.errors import UserError


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dirs",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="run or profile directories; runs of one suite are merged",
    )
    parser.add_argument(
        "--output",
        "-o",
        type=Path,
        default=None,
        help="where to write report.md and report.html (default: the single "
        "DIR; required with several)",
    )
    parser.add_argument(
        "--claims",
        type=Path,
        default=None,
        help="claims YAML file (default: the bundled hal2023.yaml)",
    )


def report_main(args: argparse.Namespace) -> dict[str, Path]:
    """Build the report; prints and returns the paths written."""
    from halbench.report import build_report

    if args.output is None and len(args.dirs) > 1:
        raise UserError("--output: required when several run directories are given")
    out = args.output if args.output is not None else args.dirs[0]
    paths = build_report(args.dirs, out, claims_path=args.claims)
    for path in paths.values():
        print(path)
    return paths


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", type=Path, metavar="OLD_DIR", help="the reference run")
    parser.add_argument("new", type=Path, metavar="NEW_DIR", help="the run to check")
    parser.add_argument(
        "--threshold",
        type=_non_negative,
        default=0.2,
        help="relative cost growth counted as a regression (default 0.2 = 20%%)",
    )
    parser.add_argument(
        "--acc-threshold",
        type=_non_negative,
        default=1.0,
        help="accuracy drop in points counted as a regression when beyond the noise (default 1.0)",
    )
    parser.add_argument(
        "--output",
        "-o",
        type=Path,
        default=None,
        help="also write the comparison as Markdown to this file",
    )


def compare_main(args: argparse.Namespace) -> bool:
    """Print what changed; True when something regressed beyond the thresholds."""
    from halbench.report.compare import compare_runs, comparison_markdown, write_comparison

    result = compare_runs(
        args.old, args.new, threshold=args.threshold, acc_threshold=args.acc_threshold
    )
    text = comparison_markdown(result)
    sys.stdout.write(text)
    if args.output is not None:
        write_comparison(text, args.output)
    return bool(result.regressions)


def add_reproduce_parser(sub: argparse._SubParsersAction) -> None:
    """Declare `halbench reproduce` (report/reproduce.py); its handler returns the exit code:
    0 when every headline reproduces, 3 when one leaves the original's interval."""
    parser = sub.add_parser(
        "reproduce",
        help="rerun a run directory's suite with today's code; exit 3 when a headline moves",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run to reproduce")
    parser.add_argument(
        "--output",
        "-o",
        type=Path,
        default=None,
        help="where the rerun goes (default: RUN_DIR-reproduced-<UTC time> beside RUN_DIR)",
    )
    parser.add_argument("--no-ray", action="store_true", help="rerun trials in this process")
    parser.add_argument("--claims", type=Path, default=None, help="claims YAML file")
    parser.set_defaults(handler=reproduce_command)


def reproduce_command(args: argparse.Namespace) -> int:
    # Imported here: the claim statistics (scipy, statsmodels) stay out of every CLI start-up.
    from halbench.report.reproduce import reproduce_main

    return reproduce_main(args)
