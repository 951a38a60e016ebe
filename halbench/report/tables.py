"""Header and accuracy tables of one suite group.

Accuracy is in percent points (trials store fractions in [0, 1]); every accuracy cell is the mean
over seeds of the ok trials with its 95% t interval.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from halbench.report.compute import device_time, fmt_s
from halbench.report.format import fmt_est, fmt_params
from halbench.report.model import Cell, KeyValues, Table
from halbench.report.rows import group_by, mark_best, percent_estimate, seed_values
from halbench.report.views import ReportView, best_configs, suite_list
from halbench.results import STATUSES

# ---------------------------------------------------------------- header


def relative_dirs(dirs: list[Path], out_dir: Path | None) -> str:
    """The run directories as a reader of the report finds them: relative to the report's
    directory ('.' when the report sits in the run directory, '../run1' beside it); as given
    when they share no directory but the root (a relative path climbing to / helps no one)."""
    if out_dir is None:
        return ", ".join(str(d) for d in dirs)
    base = Path(out_dir).resolve()
    out = []
    for d in dirs:
        path = Path(d).resolve()
        near = Path(os.path.commonpath([path, base])) != Path(path.anchor)
        out.append(os.path.relpath(path, base) if near else str(d))
    return ", ".join(out)


def header(view: ReportView, out_dir: Path | None = None) -> KeyValues:
    """Provenance of the group: suite, dates, versions, device, status counts, grid; the run
    directories relative to out_dir, where the report is written."""
    group = view.group

    def env_values(key: str) -> str:
        vals = sorted({str(e[key]) for e in group.envs if e.get(key) not in (None, "")})
        return ", ".join(vals) if vals else "—"

    started = [str(e["started_at"]) for e in group.envs if e.get("started_at")]
    finished = [str(e["finished_at"]) for e in group.envs if e.get("finished_at")]
    counts = group.trials.group_by("status").len().to_dicts() if group.trials.height else []
    by_status = {str(c["status"]): int(c["len"]) for c in counts}
    status_text = ", ".join(f"{s} {by_status.get(s, 0)}" for s in STATUSES)
    extra = sorted(set(by_status) - set(STATUSES))
    status_text += "".join(f", {s} {by_status[s]}" for s in extra)
    items = [
        ("suite", group.name),
        ("suite hash", group.suite_hash or "—"),
        ("run directories", relative_dirs(group.dirs, out_dir)),
        ("date", f"{min(started) if started else '—'} → {max(finished) if finished else '—'}"),
        ("halbench", env_values("halbench")),
        ("git sha", env_values("git_sha")),
        ("device", env_values("device")),
        ("gpu", env_values("gpu")),
        ("cpu", env_values("cpu")),
        ("python", env_values("python")),
        ("torch", env_values("torch")),
        ("ray", env_values("ray")),
    ]
    if group.trials.height:
        items.append((f"trials ({group.trials.height})", status_text))
    if group.profile.height:
        n_ok = group.profile.filter(pl.col("status") == "ok").height
        items.append(("profile points", f"{group.profile.height} ({n_ok} ok)"))
    if (spent := device_time(view)) is not None:
        items.append(("device time, all trials", f"{fmt_s(spent[0])} ({spent[1]})"))
    items.extend(grid_items(view))
    return KeyValues(items)


def grid_items(view: ReportView) -> list[tuple[str, str]]:
    """The grid as the suite declares it, completed from the data when there is no suite."""
    group = view.group
    t, p = group.trials, group.profile

    def listing(key: str, column: str) -> str:
        vals = suite_list(group.suite, "grid", key)
        if not vals:
            vals = sorted(
                set(t[column].drop_nulls().to_list())
                | (set(p[column].drop_nulls().to_list()) if column in p.columns else set())
            )
        return ", ".join(str(v) for v in vals) or "—"

    # Dataset names as the rows write them, plus those a normalized suite lists under
    # `datasets` (a trial-less dataset is still part of the grid).
    declared = suite_list(group.suite, "datasets")
    names = {str(d["name"]) for d in declared if isinstance(d, dict) and d.get("name")}
    datasets = sorted(set(t["dataset"].drop_nulls().to_list()) | names)
    return [
        ("datasets", ", ".join(datasets) or "—"),
        ("losses", ", ".join(view.losses) or "—"),
        ("batch sizes", listing("batch_size", "batch_size")),
        ("embedding dims", listing("embedding_dim", "embedding_dim")),
        ("seeds", listing("seed", "seed") if t.height else "—"),
        ("k (k-NN)", _ks_text(view)),
    ]


def _ks_text(view: ReportView) -> str:
    """The evaluated ks, else the suite's (a run whose trials all failed has no accuracy)."""
    if view.ks:
        return ", ".join(str(k) for k in view.ks)
    declared = [str(k) for k in suite_list(view.suite, "eval", "ks")]
    return f"{', '.join(declared)} (none evaluated)" if declared else "—"


# ---------------------------------------------------------------- accuracy


# Said under the accuracy tables of a run with tuning replicates (stats.nested_mean_ci).
REPLICATES_NOTE = (
    " With tuning replicates, each cell pools every replicate's final runs, and its interval "
    "(and a star's) is over the replicates' means: it covers the variance between tunings, "
    "as the verdicts' intervals do, so it is wide when the tunings disagree."
)


def _replicated(rows: list) -> bool:
    return len({r.get("replicate") for r in rows if r.get("replicate") is not None}) > 1


def accuracy_tables(view: ReportView, prefix: str) -> list[Table]:
    """One table per k: rows dataset x loss, columns (B, d); best loss per column marked."""
    rows = view.ok
    if not rows:
        return []
    configs = sorted({(r["batch_size"], r["embedding_dim"]) for r in rows})
    cells_by = group_by(rows, ["dataset", "loss", "batch_size", "embedding_dim"])
    n_seeds = max(len(v) for v in cells_by.values())
    tables = []
    for k in view.ks:
        table_rows: list[list[Cell]] = []
        for dataset in view.datasets:
            labels = view.order({r["loss"] for r in rows if r["dataset"] == dataset})
            ests = {
                (label, cfg): percent_estimate(
                    cells_by.get((dataset, label, *cfg), []), f"knn_acc_{k}"
                )
                for label in labels
                for cfg in configs
            }
            marks = {}
            for cfg in configs:
                marks.update(
                    {
                        (label, cfg): m
                        for label, m in mark_best(
                            {
                                label: seed_values(
                                    cells_by.get((dataset, label, *cfg), []), f"knn_acc_{k}", 100.0
                                )
                                for label in labels
                            }
                        ).items()
                    }
                )
            for label in labels:
                row = [Cell(dataset), Cell(label), Cell(_params_of(cells_by, dataset, label))]
                for cfg in configs:
                    est = ests[(label, cfg)]
                    best, noisy = marks.get((label, cfg), (False, False))
                    row.append(
                        Cell(
                            fmt_est(est, n_expected=n_seeds),
                            None if est is None else est.mean,
                            best,
                            noisy,
                        )
                    )
                table_rows.append(row)
        tables.append(
            Table(
                id=f"{prefix}-acc-k{k}",
                title=f"k-NN accuracy (k={k}, %)",
                columns=["dataset", "loss", "loss params"] + [f"B={b} d={d}" for b, d in configs],
                rows=table_rows,
                notes=[
                    f"Mean ± half-width of the 95% t interval over seeds ({n_seeds} per cell "
                    "unless n is shown); ok trials only. ★ best loss of the column per dataset, "
                    "beyond the noise (95% CI of its difference to the runner-up above 0); "
                    "☆ within noise: the highest mean, but not distinguishable from the runner-up. "
                    "No mark where a column has one loss or the top two have one seed each. "
                    "Loss params: the loss's parameters as trained (a tuned value when the run "
                    "tuned it; defaults: the registry's own), per (B, d) when they differ."
                    + REPLICATES_NOTE
                    * _replicated(rows)
                ],
            )
        )
    return tables


def _params_of(cells_by: dict, dataset: str, label: str) -> str:
    """A loss's parameters on one dataset: one text when every (B, d) trained with the same,
    else 'B=32 d=16: scale=8; B=128 d=16: scale=24' (each group tuned on its own)."""
    per_cfg = {
        (b, d): sorted({fmt_params(r.get("loss_params")) for r in rows})
        for (ds, lb, b, d), rows in sorted(cells_by.items())
        if ds == dataset and lb == label
    }
    texts = {"; ".join(t) for t in per_cfg.values()}
    if len(texts) <= 1:
        return next(iter(texts), "—")
    return "; ".join(f"B={b} d={d}: {' / '.join(t)}" for (b, d), t in per_cfg.items())


def best_config_table(view: ReportView, prefix: str) -> Table | None:
    """Each loss's best (B, d) per dataset, by mean k-NN accuracy at the primary k."""
    rows, k0 = view.ok, view.k
    if not rows or k0 is None:
        return None
    metrics = [(f"knn_acc_{k}", f"k-NN@{k}") for k in view.ks] + [
        ("p_at_1", "P@1"),
        ("map_at_r", "MAP@R"),
        ("anchor_acc", "anchor acc"),
    ]
    metrics = [m for m in metrics if any(r.get(m[0]) is not None for r in rows)]
    cells_by = group_by(rows, ["dataset", "loss", "batch_size", "embedding_dim"])
    out: list[list[Cell]] = []
    for dataset in view.datasets:
        picks = {
            label: (dataset, label, *cfg)
            for label, cfg in best_configs(view, dataset, f"knn_acc_{k0}").items()
        }
        ests = {
            (label, col): percent_estimate(cells_by[key], col)
            for label, key in picks.items()
            for col, _ in metrics
        }
        marks = {
            col: mark_best(
                {label: seed_values(cells_by[key], col, 100.0) for label, key in picks.items()}
            )
            for col, _ in metrics
        }
        for label, key in picks.items():
            row = [
                Cell(dataset),
                Cell(label),
                Cell(str(key[2]), key[2]),
                Cell(str(key[3]), key[3]),
                Cell(str(len(cells_by[key])), len(cells_by[key])),
                Cell(" / ".join(sorted({fmt_params(r.get("loss_params")) for r in cells_by[key]}))),
            ]
            for col, _ in metrics:
                est = ests[(label, col)]
                best, noisy = marks[col].get(label, (False, False))
                row.append(Cell(fmt_est(est), None if est is None else est.mean, best, noisy))
            out.append(row)
    chosen_by = (
        "validation score (tuning), never the test split"
        if view.select_by
        else f"test k-NN@{k0}: exploratory"
    )
    return Table(
        id=f"{prefix}-best-config",
        title=f"Best configuration of each loss (chosen by {chosen_by})",
        columns=["dataset", "loss", "B", "d", "seeds", "loss params"]
        + [name for _, name in metrics],
        rows=out,
        notes=[
            "Values in %, mean ± 95% CI half-width over seeds. ★ best loss per dataset beyond "
            "the noise; ☆ within noise of the runner-up; no mark where a column has one loss "
            "or one seed." + REPLICATES_NOTE * _replicated(rows)
        ],
    )
