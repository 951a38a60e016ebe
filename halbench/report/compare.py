"""What changed between two runs, and whether it is beyond the noise.

Accuracy per (dataset, loss, B, d): new − old with a 95% interval over seeds (paired when both
runs have the same seeds). Cost per point: new / old of the median. A regression is a trial that
was ok and no longer is, an accuracy drop whose interval lies below 0 and whose mean exceeds the
accuracy threshold (with one seed a side: the drop alone), a cost that grew by more than the
relative threshold, or a metric that was a number and became NaN.

Times are noisy (a shared machine's load changes between runs), so a time must also have grown
beyond both runs' spread: a profiled time when new median − new IQR > old median + old IQR
(the repeats' interquartile ranges, time_fwdbwd_iqr_ms), a trial time when the 95% interval
of the per-seed log-time difference lies above 0 and every new seed is slower than every old
one (the seeds' ranges do not overlap: a machine's load shifts all seeds of a run together,
which the interval alone reads as a change); with one seed a side, the threshold alone.
FLOPs and memory are deterministic counts: the threshold alone.

A run with nothing to compare (no rows, or ok rows whose every metric is missing or NaN) is a
UserError, never a clean comparison: a CI gate must not pass on a broken run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from halbench.errors import UserError
from halbench.report.format import fmt_interval, fmt_ratio
from halbench.report.load import load_groups
from halbench.report.model import Cell, Table
from halbench.report.rows import Row, finite, group_by, median_of, point_order, ratio, seed_values
from halbench.report.stats import diff_ci
from halbench.report.views import ReportView, build_view
from halbench.results import write_text_atomic

TRIAL_KEY = ["dataset", "loss", "batch_size", "embedding_dim"]
PROFILE_KEY = ["loss", "batch_size", "embedding_dim", "num_classes", "memory_size", "device"]
TRIAL_COSTS = [
    ("loss_call_ms", "time"),
    ("loss_flops_fwd", "FLOPs fwd"),
    ("loss_peak_mem_bytes", "peak mem"),
]
PROFILE_COSTS = [
    ("time_fwdbwd_ms", "time"),
    ("flops_fwd", "FLOPs fwd"),
    ("peak_mem_bytes", "peak mem"),
]


@dataclass
class Comparison:
    old: Path
    new: Path
    tables: list[Table] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _one(path: Path, role: str) -> ReportView:
    """The run as a view; UserError when it holds nothing a comparison could use."""
    groups = load_groups([path])
    if len(groups) > 1:
        raise UserError(f"{path}: {role} holds {len(groups)} suites; compare one suite at a time")
    view = build_view(groups[0])
    failed = [r for r in view.group.trials.to_dicts() if r["status"] != "ok"]
    failed += [r for r in view.profile_rows if r["status"] != "ok"]
    knn = [f"knn_acc_{k}" for k in view.ks]
    measured = any(finite(r.get(c)) for r in view.ok for c in knn) or any(
        finite(r.get(c)) for r in view.profile_rows if r["status"] == "ok" for c, _ in PROFILE_COSTS
    )
    if not measured and not failed:
        what = (
            "no trial or profile rows"
            if view.group.trials.height + view.group.profile.height == 0
            else "no ok row has a k-NN accuracy or a cost (every metric missing or NaN)"
        )
        raise UserError(f"{path}: {role} run has nothing to compare: {what}")
    return view


def _key_text(key: tuple) -> str:
    return " ".join(str(x) for x in key)


def _statuses(rows: list[dict], keys: list[str]) -> dict[tuple, str]:
    return {tuple(r[k] for k in keys): r["status"] for r in rows}


def _status_changes(old: dict, new: dict, result: Comparison) -> None:
    for key in sorted(set(old) & set(new), key=point_order):
        if old[key] == "ok" and new[key] != "ok":
            result.regressions.append(f"{_key_text(key)}: status ok → {new[key]}")


TIME_COLUMNS = {"loss_call_ms": None, "time_fwdbwd_ms": "time_fwdbwd_iqr_ms"}


def beyond_spread(old: list[Row], new: list[Row], column: str) -> int:
    """+1 when a time grew beyond both runs' spread, -1 when it shrank beyond it, else 0 (see
    the module docstring); a column that is not a time always counts (+1 / -1 by sign)."""
    if column not in TIME_COLUMNS:
        return 1
    iqr = TIME_COLUMNS[column]
    if iqr is not None:
        o, n = median_of(old, column), median_of(new, column)
        o_iqr, n_iqr = median_of(old, iqr) or 0.0, median_of(new, iqr) or 0.0
        if o is None or n is None:
            return 0
        return 1 if n - n_iqr > o + o_iqr else -1 if n + n_iqr < o - o_iqr else 0
    logs = [
        {
            int(r["seed"]): math.log(r[column])
            for r in rows
            if finite(r.get(column)) and r[column] > 0
        }
        for rows in (new, old)
    ]
    diff = diff_ci(*logs)
    if diff is None or diff.lo is None or diff.hi is None:
        return 1  # one seed a side: no spread to compare against
    new_logs, old_logs = (list(x.values()) for x in logs)
    if diff.lo > 0 and min(new_logs) > max(old_logs):
        return 1
    if diff.hi < 0 and max(new_logs) < min(old_logs):
        return -1
    return 0


def _cost_rows(
    old_cells: dict,
    new_cells: dict,
    costs: list[tuple[str, str]],
    threshold: float,
    result: Comparison,
) -> list[list[Cell]]:
    rows = []
    for key in sorted(set(old_cells) & set(new_cells), key=point_order):
        cells = [Cell(_key_text(key))]
        for column, name in costs:
            old, new = old_cells[key], new_cells[key]
            r = ratio(median_of(new, column), median_of(old, column))
            grew = r is not None and r > 1.0 + threshold
            shrank = r is not None and r < 1.0 / (1.0 + threshold)
            noise = beyond_spread(old, new, column) if grew or shrank else 0
            worse, better = grew and noise > 0, shrank and noise < 0
            mark = (
                " ▲ worse"
                if worse
                else " ▼ better"
                if better
                else " within noise"
                if grew or shrank
                else ""
            )
            cells.append(Cell(fmt_ratio(r) + mark, r))
            if worse:
                result.regressions.append(f"{_key_text(key)}: {name} × {r:.3g} (new / old)")
        rows.append(cells)
    return rows


def compare_runs(
    old_dir: Path, new_dir: Path, *, threshold: float = 0.2, acc_threshold: float = 1.0
) -> Comparison:
    """Compare two run directories (training or profile runs)."""
    if threshold < 0:
        raise ValueError(f"threshold: expected a relative change >= 0, got {threshold}")
    if acc_threshold < 0:
        raise ValueError(f"acc_threshold: expected points >= 0, got {acc_threshold}")
    old, new = _one(Path(old_dir), "OLD"), _one(Path(new_dir), "NEW")
    result = Comparison(Path(old_dir), Path(new_dir))
    old_hash, new_hash = old.group.suite_hash, new.group.suite_hash
    if old_hash != new_hash:
        result.notes.append(
            f"Different suites (hash {old_hash} vs {new_hash}): "
            "only configurations present in both are compared."
        )
    _compare_trials(old, new, threshold, acc_threshold, result)
    _compare_profiles(old, new, threshold, result)
    if not result.tables:
        result.notes.append("No configuration is present in both runs.")
    return result


def _became_nan(
    old_cells: dict, new_cells: dict, columns: list[tuple[str, str]], result: Comparison
) -> None:
    """A value that was a number in OLD and is NaN or inf in NEW (same point, same seed when
    there are seeds) is a regression; a value no longer measured (null) is not."""

    def by_seed(rows: list[Row], column: str) -> dict:
        return {r.get("seed"): r.get(column) for r in rows}

    for key in sorted(set(old_cells) & set(new_cells), key=point_order):
        for column, name in columns:
            before, after = by_seed(old_cells[key], column), by_seed(new_cells[key], column)
            lost = [
                s
                for s, v in after.items()
                if v is not None and not finite(v) and finite(before.get(s))
            ]
            if lost:
                seeds = "" if lost == [None] else f" (seed {', '.join(map(str, sorted(lost)))})"
                result.regressions.append(f"{_key_text(key)}: {name} became NaN{seeds}")


def _compare_trials(
    old: ReportView, new: ReportView, threshold: float, acc_threshold: float, result: Comparison
) -> None:
    keys = [*TRIAL_KEY, "seed"]
    _status_changes(
        _statuses(old.group.trials.to_dicts(), keys),
        _statuses(new.group.trials.to_dicts(), keys),
        result,
    )
    old_cells, new_cells = group_by(old.ok, TRIAL_KEY), group_by(new.ok, TRIAL_KEY)
    common = sorted(set(old_cells) & set(new_cells), key=point_order)
    only_old = set(old_cells) - set(new_cells)
    if only_old:
        result.notes.append(
            f"{len(only_old)} configuration(s) only in the old run, e.g. "
            f"{_key_text(sorted(only_old, key=point_order)[0])}."
        )
    k = new.k
    if not common or k is None:
        return
    _became_nan(old_cells, new_cells, [(f"knn_acc_{k}", f"k-NN@{k}"), *TRIAL_COSTS], result)
    rows = []
    for key in common:
        column = f"knn_acc_{k}"
        diff = diff_ci(
            seed_values(new_cells[key], column, 100.0), seed_values(old_cells[key], column, 100.0)
        )
        if diff is None:
            continue
        if diff.hi is not None:
            worse, better = diff.hi < 0, diff.lo is not None and diff.lo > 0
        else:  # one seed a side: no noise estimate, only the threshold
            worse, better = diff.mean < -acc_threshold, diff.mean > acc_threshold
        label = "▲ better" if better else "▼ worse" if worse else "within noise"
        if worse and -diff.mean > acc_threshold:
            result.regressions.append(f"{_key_text(key)}: k-NN@{k} {fmt_interval(diff)} points")
        rows.append([Cell(_key_text(key)), Cell(fmt_interval(diff), diff.mean), Cell(label)])
    result.tables.append(
        Table(
            "compare-accuracy",
            f"k-NN@{k} accuracy, new − old (points, 95% CI over seeds)",
            ["dataset loss B d", "new − old", "change"],
            rows,
        )
    )
    cost_rows = _cost_rows(old_cells, new_cells, TRIAL_COSTS, threshold, result)
    if any(c.value is not None for row in cost_rows for c in row[1:]):
        result.tables.append(
            Table(
                "compare-cost",
                "Loss-call cost during training, new / old (median over seeds)",
                ["dataset loss B d"] + [name for _, name in TRIAL_COSTS],
                cost_rows,
                [
                    f"▲ worse: grew by more than {threshold:.0%} and, for time, beyond the "
                    "spread over seeds (95% CI of the per-seed log-time difference above 0 and "
                    "the seeds' ranges apart); ▼ better: shrank as much; within noise: past "
                    "the threshold but not the spread."
                ],
            )
        )


def _compare_profiles(
    old: ReportView, new: ReportView, threshold: float, result: Comparison
) -> None:
    old_rows, new_rows = old.profile_rows, new.profile_rows
    _status_changes(_statuses(old_rows, PROFILE_KEY), _statuses(new_rows, PROFILE_KEY), result)
    ok = [
        group_by([r for r in rows if r["status"] == "ok"], PROFILE_KEY)
        for rows in (old_rows, new_rows)
    ]
    _became_nan(ok[0], ok[1], PROFILE_COSTS, result)
    cost_rows = _cost_rows(ok[0], ok[1], PROFILE_COSTS, threshold, result)
    if cost_rows:
        result.tables.append(
            Table(
                "compare-profile",
                "Profiled loss-call cost, new / old",
                ["loss B d C M device"] + [name for _, name in PROFILE_COSTS],
                cost_rows,
                [
                    f"▲ worse: grew by more than {threshold:.0%} and, for time, beyond both "
                    "runs' spread (new median − IQR above old median + IQR); ▼ better: shrank "
                    "as much; within noise: past the threshold but not the spread."
                ],
            )
        )


def comparison_markdown(result: Comparison) -> str:
    from halbench.report.markdown import table_markdown

    lines = [f"# halbench compare: {result.old} → {result.new}", ""]
    lines += [f"_{n}_\n" for n in result.notes]
    for table in result.tables:
        lines += [table_markdown(table), ""]
    if result.regressions:
        lines += [f"**{len(result.regressions)} regression(s) beyond the thresholds:**", ""]
        lines += [f"- {r}" for r in result.regressions]
    else:
        lines.append("**No regression beyond the thresholds.**")
    return "\n".join(lines) + "\n"


def write_comparison(text: str, path: Path) -> None:
    """Write the comparison atomically; UserError naming the path when it cannot be written."""
    try:
        write_text_atomic(Path(path), text)
    except OSError as err:
        raise UserError(f"{err.filename or path}: cannot write ({err.strerror or err})") from err
