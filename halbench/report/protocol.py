"""What a group's verdicts rest on: the training setup, its budget, the failed trials, and the
sentences that qualify the verdicts (exploratory selection, a budget far below the paper's).

Everything is read from the run directory: the suite record (suite.json, else suite.yaml) and
the trial rows. Optional row columns `train_rows`, `validation_rows`, `test_rows` and
`steps_per_epoch` (what a trial actually loaded and ran) win over what the suite implies.
"""

from __future__ import annotations

import json
from typing import Any

from halbench.report.model import Cell, KeyValues, Table
from halbench.report.rows import Row, median_of
from halbench.report.views import ReportView, suite_list

# "Far below the paper's setting": the paper trains CIFAR-10 / Fashion-MNIST to convergence,
# tens of thousands of optimizer steps; under this many per trial the verdicts describe an
# early stage of training.
PAPER_STEPS = 2000
ERROR_CHARS = 160


def section(suite: dict[str, Any], key: str) -> dict[str, Any]:
    value = suite.get(key)
    return value if isinstance(value, dict) else {}


def dataset_section(suite: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """The suite's dataset section: `dataset:` as written, or the entry of the normalized
    `datasets:` list (suite.json) named `name` (the first when no name is given)."""
    if section(suite, "dataset"):
        return section(suite, "dataset")
    entries = [d for d in suite.get("datasets") or [] if isinstance(d, dict)]
    named = [d for d in entries if name is None or d.get("name") == name]
    return named[0] if named else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def data_sizes(view: ReportView) -> dict[str, int | None]:
    """Rows of train (what a trial trains on), validation (tuned suites) and test.

    From the rows' train_rows / validation_rows / test_rows when the trials recorded them,
    else from the suite: dataset.train_size / test_size (None: the full split, not known
    here), and tune.validation (a fraction of the training split or a count) carved from it
    unless final.train_on is train+validation.
    """
    suite = view.suite
    dataset = dataset_section(suite, view.datasets[0] if view.datasets else None)
    tune, final = section(suite, "tune"), section(suite, "final")
    train, test = _int(dataset.get("train_size")), _int(dataset.get("test_size"))
    validation: int | None = None
    frac = tune.get("validation")
    if isinstance(frac, float) and train is not None:
        validation = round(frac * train)
    elif _int(frac) is not None:
        validation = int(frac)
    if train is not None and validation is not None and final.get("train_on") != "train+validation":
        train -= validation
    out = {"train": train, "validation": validation if tune else None, "test": test}
    for key in out:
        measured = median_of(view.ok or view.failed, f"{key}_rows")
        if measured is not None:
            out[key] = int(measured)
    return out


def steps_per_trial(view: ReportView) -> dict[int, tuple[int, int]]:
    """Batch size -> (optimizer steps per epoch, per trial) of the rows that claims use.

    Steps per epoch: the rows' steps_per_epoch when recorded, else train rows // B, capped by
    train.max_steps_per_epoch; epochs: the rows' epochs (final.epochs in a tuned run).
    """
    train_cfg = section(view.suite, "train")
    cap = _int(train_cfg.get("max_steps_per_epoch"))
    train = data_sizes(view)["train"]
    rows = view.ok or view.failed
    out = {}
    for b in sorted({int(r["batch_size"]) for r in rows}):
        these = [r for r in rows if r["batch_size"] == b]
        recorded = median_of(these, "steps_per_epoch")
        per_epoch = int(recorded) if recorded is not None else (train // b if train else None)
        if per_epoch is None:
            continue
        if cap is not None and recorded is None:
            per_epoch = min(per_epoch, cap)
        epochs = median_of(these, "epochs") or _int(train_cfg.get("epochs")) or 0
        out[b] = (per_epoch, int(epochs) * per_epoch)
    return out


def _size(n: int | None, what: str) -> str:
    return f"{n:,}" if n is not None else f"full {what} split"


def _model(view: ReportView) -> str:
    model = section(view.suite, "model")
    names = sorted({str(r["model"]) for r in view.ok + view.failed if r.get("model")})
    name = str(model.get("backbone") or ", ".join(names) or "—")
    params = model.get("params")
    return name + (f" {json.dumps(params, sort_keys=True)}" if params else "")


def setup_items(view: ReportView) -> KeyValues:
    """The training setup the verdicts rest on: model, data, epochs, steps, optimizer."""
    suite, train = view.suite, section(view.suite, "train")
    if not view.ok and not view.failed:  # a loss-call profile: nothing was trained
        what = f"loss-call profile, {len(view.profile_rows)} points; no training"
        return KeyValues([("description", str(suite.get("description") or "—")), ("run", what)])
    sizes = data_sizes(view)
    data = f"train {_size(sizes['train'], 'training')}"
    if sizes["validation"] is not None:
        data += f" / validation {sizes['validation']:,}"
    data += f" / test {_size(sizes['test'], 'test')}"
    epochs = sorted({int(r["epochs"]) for r in view.ok + view.failed if r.get("epochs")})
    steps = steps_per_trial(view)
    optimizer = ", ".join(
        f"{key} {train[key]}"
        for key in ("optimizer", "lr", "weight_decay", "schedule")
        if train.get(key) is not None
    )
    items = [
        ("description", str(suite.get("description") or "—")),
        ("datasets", ", ".join(view.datasets) or "—"),
        ("model", _model(view)),
        ("data (rows)", data),
        (
            "epochs per trial",
            ", ".join(map(str, epochs)) or str(train.get("epochs", "—")),
        ),
        (
            "optimizer steps per trial",
            "; ".join(
                f"B={b}: {per} per epoch, {total:,} in all" for b, (per, total) in steps.items()
            )
            or "— (training-split size unknown)",
        ),
        ("optimizer", optimizer or "—"),
    ]
    if view.tuned:
        items.append(("hyperparameters", "tuned per loss on the validation split (below)"))
    else:
        items.append(("hyperparameters", "hand-set in the suite (no `tune:` section)"))
    return KeyValues(items)


def verdict_notes(view: ReportView) -> list[str]:
    """Sentences that go above every verdict: what the verdicts cannot say."""
    notes = []
    trials = view.ok + view.failed
    if trials and not view.ok:
        statuses = ", ".join(sorted({str(r["status"]) for r in view.failed}))
        notes.append(
            f"**Every trial failed** ({len(view.failed)} trials: {statuses}); no claim can be "
            "judged. The failed trials and their errors are listed under Protocol."
        )
    steps = steps_per_trial(view)
    if steps and max(total for _, total in steps.values()) < PAPER_STEPS:
        most = max(total for _, total in steps.values())
        notes.append(
            f"**Short training:** at most {most:,} optimizer steps per trial (fewer than "
            f"{PAPER_STEPS:,}), while the paper trains to convergence, tens of thousands of "
            "steps: the verdicts describe early training, not the converged models the paper "
            "reports."
        )
    if trials and not view.tuned:
        notes.append(
            "**Exploratory verdicts:** the configurations were hand-set, and each loss's best "
            "(B, d) was chosen on the test split (no `tune:` section, no validation split), so "
            "the selection saw the data it is judged on."
        )
    return notes


def failed_table(rows: list[Row], table_id: str, title: str) -> Table | None:
    """Failed trials with their status and the first line of their error."""
    if not rows:
        return None
    keys = ("dataset", "loss", "batch_size", "embedding_dim", "seed", "trial_index")
    body = []
    for r in sorted(rows, key=lambda r: str(r.get("trial_id"))):
        where = " ".join(
            f"{k.replace('batch_size', 'B').replace('embedding_dim', 'd')}={r[k]}"
            if k not in ("dataset", "loss")
            else str(r[k])
            for k in keys
            if r.get(k) is not None
        )
        error = str(r.get("error") or "").strip().splitlines()
        first = error[0][:ERROR_CHARS] if error else "(no error recorded)"
        body.append(
            [Cell(str(r.get("trial_id"))), Cell(where), Cell(str(r["status"])), Cell(first)]
        )
    return Table(
        id=table_id,
        title=title,
        columns=["trial", "where", "status", "error (first line)"],
        rows=body,
    )


def grid_note(view: ReportView) -> str | None:
    """Which grid axes stayed axes (tuned separately per value) in a tuned suite."""
    space = section(section(view.suite, "tune"), "space")
    axes = [
        key
        for key in ("batch_size", "embedding_dim")
        if key not in space and len(suite_list(view.suite, "grid", key)) > 1
    ]
    if not axes:
        return None
    return (
        f"{' and '.join(axes)} stayed grid axes: every value is tuned separately with the "
        "full budget (one tuning group per loss and value)."
    )


def _config_text(row: Row) -> str:
    """A tuning row's configuration, short: `lr=0.00123, weight_decay=0.05`."""
    try:
        config = json.loads(row.get("config") or "{}")
    except ValueError:
        config = {}
    if not isinstance(config, dict) or not config:
        return "—"
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(config.items())
    )


def replicates_table(view: ReportView, prefix: str) -> Table | None:
    """Per loss (and grid point): the configuration each tuning replicate chose, and whether
    the replicates agree (tune.replicates; None for a run with one replicate)."""
    reps = sorted(
        {int(r["replicate"]) for r in view.tuning if _int(r.get("replicate")) is not None}
    )
    if len(reps) < 2:
        return None
    picks: dict[str, dict[int, Row]] = {}
    for row in view.tuning:
        replicate = _int(row.get("replicate"))
        if replicate is None:
            continue
        base = str(row["group"]).removesuffix(f"/r{replicate}")
        mine = picks.setdefault(base, {})
        if row.get("chosen"):
            mine[replicate] = row
    body = []
    for base, chosen in picks.items():
        configs = [_config_text(chosen[r]) if r in chosen else None for r in reps]
        agree = None not in configs and len(set(configs)) == 1
        body.append(
            [Cell(base)]
            + [Cell(c if c is not None else "none finished") for c in configs]
            + [Cell("same" if agree else "differ")]
        )
    return Table(
        id=f"{prefix}-replicates",
        title="Configuration each tuning replicate chose",
        columns=["group"] + [f"replicate {r}" for r in reps] + ["replicates"],
        rows=body,
        notes=[
            "Each replicate tuned with its own search seed, training seed and validation "
            "split, and its chosen configuration was retrained with every final seed. "
            '"differ": the selection itself varies from one tuning to the next.'
        ],
    )
