"""The tuned protocol of a group (tuning.parquet and the suite's `tune:` / `final:` sections):
how each loss was tuned, the search space, and the configuration each loss retrained.

A tuning trial's score is `last_val`, the validation metric after its last epoch run: the
score the selection rule (halbench.suite.tune.best_trial) ranks by.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from halbench.report.model import Cell, KeyValues, Table
from halbench.report.protocol import grid_note, section
from halbench.report.rows import Row, finite, group_by
from halbench.report.views import ReportView
from halbench.results.config import SpaceEntry, space_entries


def suite_space(suite: dict[str, Any]) -> list[SpaceEntry]:
    """The run's recorded tune.space as entries (halbench.results.config reads it)."""
    return space_entries(section(section(suite, "tune"), "space"))


def config_of(row: Row) -> dict[str, Any]:
    """The sampled configuration of a tuning or final row (its `config` JSON)."""
    try:
        value = json.loads(row.get("config") or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def score(row: Row) -> float | None:
    return (
        float(row["last_val"])
        if row.get("status") == "ok" and finite(row.get("last_val"))
        else None
    )


def group_label(rows: list[Row], several: bool) -> str:
    """'hal', or 'hal B=64 d=64' when one loss has several tuning groups."""
    r = rows[0]
    if not several:
        return str(r["loss"])
    return f"{r['loss']} B={r['batch_size']} d={r['embedding_dim']}"


def groups_of(view: ReportView) -> list[tuple[str, list[Row]]]:
    """(label, rows sorted by trial_index) per tuning group, in the report's loss order."""
    by_group = group_by(view.tuning, ["group"])
    per_loss = group_by(view.tuning, ["loss"])
    several = {loss: len({r["group"] for r in rows}) > 1 for (loss,), rows in per_loss.items()}
    order = {label: i for i, label in enumerate(view.losses)}
    out = []
    for (_group,), rows in sorted(
        by_group.items(),
        key=lambda kv: (
            order.get(kv[1][0]["loss"], len(order)),
            str(kv[1][0]["loss"]),
            min(r["batch_size"] or 0 for r in kv[1]),
            min(r["embedding_dim"] or 0 for r in kv[1]),
            str(kv[0]),
        ),
    ):
        rows = sorted(rows, key=lambda r: r["trial_index"])
        out.append((group_label(rows, several[rows[0]["loss"]]), rows))
    return out


def chosen_row(rows: list[Row], final: Iterable[Row]) -> Row | None:
    """The tuning trial that was retrained: `chosen`, else the final rows' `tuned_from`."""
    marked = [r for r in rows if r.get("chosen")]
    if marked:
        return marked[0]
    origins = {r.get("tuned_from") for r in final}
    return next((r for r in rows if r["trial_id"] in origins), None)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def protocol_items(view: ReportView) -> KeyValues:
    tune, final = section(view.suite, "tune"), section(view.suite, "final")
    counts = {label: len(rows) for label, rows in groups_of(view)}
    stopped = sum(bool(r.get("stopped_early")) for r in view.tuning)
    failed = sum(r.get("status") != "ok" for r in view.tuning)
    scheduler = str(tune.get("scheduler", "—"))
    if scheduler == "asha" and tune.get("grace_epochs") is not None:
        scheduler += f" (grace {tune['grace_epochs']} epoch(s))"
    validation = tune.get("validation")
    items = [
        (
            "selection",
            "validation split carved from the training split; the test split is "
            "read only by the final runs",
        ),
        (
            "validation",
            "—"
            if validation is None
            else (
                f"{validation:.0%} of the training split"
                if isinstance(validation, float)
                else f"{validation} rows of the training split"
            ),
        ),
        (
            "budget per loss",
            f"{tune.get('budget', '—')} trials (run: "
            + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none")
            + ")",
        ),
        (
            "search",
            str(tune.get("search", "—"))
            + (f", seed {tune['seed']}" if tune.get("seed") is not None else ""),
        ),
        ("scheduler", scheduler),
        ("tuning epochs", str(tune.get("epochs", "—"))),
        ("validation metric", str(tune.get("metric", "—")) + " (maximized)"),
        ("tuning trials", f"{len(view.tuning)} ({stopped} stopped early, {failed} failed)"),
        ("seeds", seed_sets(view)),
        (
            "final runs",
            f"seeds {final.get('seeds', '—')}, {final.get('epochs', '—')} epochs, "
            f"trained on {final.get('train_on', 'train')}; only these feed the claims",
        ),
    ]
    return KeyValues(items)


def seed_sets(view: ReportView) -> str:
    """'tuning {0}; final {1, 2, 3} (disjoint)': the seeds each phase trained with, from the
    rows (the suite's final.seeds when no final row exists yet)."""
    tuning = sorted({int(r["seed"]) for r in view.tuning if r.get("seed") is not None})
    final = sorted({int(r["seed"]) for r in view.ok + view.failed if r.get("seed") is not None})
    if not final:
        declared = section(view.suite, "final").get("seeds")
        final = (
            sorted(s for s in declared if isinstance(s, int)) if isinstance(declared, list) else []
        )

    def listed(seeds: list[int]) -> str:
        return "{" + ", ".join(map(str, seeds)) + "}" if seeds else "—"

    shared = sorted(set(tuning) & set(final))
    overlap = (
        f" (overlap: {listed(shared)}: a final seed also tuned)"
        if shared
        else " (disjoint)"
        if tuning and final
        else ""
    )
    return f"tuning {listed(tuning)}; final {listed(final)}{overlap}"


def space_table(view: ReportView, prefix: str) -> Table | None:
    entries = suite_space(view.suite)
    if not entries:
        return None
    return Table(
        id=f"{prefix}-space",
        title="Search space",
        columns=["key", "applies to", "distribution", "values"],
        rows=[
            [
                Cell(e.key),
                Cell(e.loss or "every loss"),
                Cell(e.kind),
                Cell(
                    ", ".join(_fmt(a) for a in e.args)
                    if e.kind == "choice"
                    else f"[{_fmt(e.args[0])}, {_fmt(e.args[-1])}]"
                ),
            ]
            for e in entries
        ],
        notes=["A key in the space overrides the suite's fixed value of that key."],
    )


def chosen_table(view: ReportView, prefix: str) -> Table | None:
    """Per tuning group: the retrained configuration, its validation score, the default's,
    and how many tuning trials beat the hand-set default (the is_default trial)."""
    groups = groups_of(view)
    if not groups:
        return None
    final = view.ok + view.failed
    keys = sorted({k for r in view.tuning for k in config_of(r)})
    body = []
    for label, rows in groups:
        chosen = chosen_row(rows, final)
        default = next((r for r in rows if r.get("is_default")), None)
        base = score(default) if default else None
        others = [score(r) for r in rows if r is not default and score(r) is not None]
        beat = (
            f"{sum(s > base for s in others)} of {len(rows) - 1}"
            if base is not None
            else "— (no default trial)"
            if default is None
            else "— (default failed)"
        )
        cfg = config_of(chosen) if chosen else {}
        body.append(
            [Cell(label)]
            + [Cell(_fmt(cfg[k]) if k in cfg else "—") for k in keys]
            + [
                Cell(
                    _pct(score(chosen)) if chosen else "none finished",
                    score(chosen) if chosen else None,
                ),
                Cell(_pct(base), base),
                Cell(beat),
                Cell("yes" if chosen is not None and chosen is default else "no"),
            ]
        )
    metric = str(section(view.suite, "tune").get("metric") or (rows[0].get("metric") or "score"))
    notes = [
        f"Validation {metric} (%) after the last epoch a trial ran. Beat the default: ok "
        "tuning trials whose score is above the hand-set default's (trial 0, the suite's own "
        "values), out of the group's other trials."
    ]
    if (note := grid_note(view)) is not None:
        notes.append(note)
    return Table(
        id=f"{prefix}-chosen",
        title="Chosen configuration of each loss",
        columns=["loss"]
        + keys
        + ["validation %", "default's %", "beat the default", "default chosen"],
        rows=body,
        notes=notes,
    )
