"""`halbench profile`: the sweep the command line asks for, and the command that resumes it."""

from __future__ import annotations

import argparse
import shlex
import sys

from halbench.run.profile import SweepOverrides, apply_overrides
from halbench.suite.profile import ProfileSuite, load_profile_suite


def load_sweep(args: argparse.Namespace) -> ProfileSuite:
    """The profile suite (file or built-in) with the command line's overrides in place."""
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
    return suite


def resume_command(args: argparse.Namespace) -> str:
    """The command that finishes this profile: the same sweep, --resume."""
    words = ["halbench", "profile"] + ([str(args.suite)] if args.suite else [])
    for flag, value in [
        ("--losses", args.losses), ("--batch-sizes", args.batch_sizes), ("--dims", args.dims),
        ("--classes", args.classes), ("--warmup", args.warmup), ("--repeats", args.repeats),
        ("--device", args.device), ("--address", args.address),
        ("--point-timeout", args.point_timeout),
    ]:  # fmt: skip
        if value is not None:
            words += [flag, ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    words += ["--no-ray"] * args.no_ray + ["--no-report"] * args.no_report
    return shlex.join([*words, "--output", str(args.output), "--resume"])


def _say_default_classes(loaded: ProfileSuite, args: argparse.Namespace) -> None:
    """Say so when the sweep's class counts C are the defaults, not the user's choice."""
    grid = loaded.grid
    if args.classes is None and "num_classes" not in grid.model_fields_set:
        counts = ", ".join(map(str, grid.num_classes))
        where = f"{args.suite} has no grid.num_classes" if args.suite else "no suite file"
        print(
            f"[halbench] profile: {where} and no --classes: adding the default class counts "
            f"C = {counts}",
            file=sys.stderr,
        )
