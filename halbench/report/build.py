"""Assemble the report model from run directories and write report.md and report.html."""

from __future__ import annotations

from pathlib import Path

from halbench.errors import UserError
from halbench.report import (
    compute,
    cost_figures,
    cost_tables,
    figures,
    protocol,
    tables,
    tuning,
    tuning_figures,
)
from halbench.report.claim_tables import ClaimResult, evaluate_claims
from halbench.report.claims import Claim, CostRatioClaim, cost_threshold, load_claims
from halbench.report.format import slug
from halbench.report.load import load_groups
from halbench.report.model import (
    VERDICT_SYMBOLS,
    Block,
    Cell,
    Figure,
    Paragraph,
    Report,
    Section,
    Table,
    Verdict,
)
from halbench.report.views import ReportView, build_view
from halbench.results import write_text_atomic


def claims_summary(results: list[ClaimResult], prefix: str) -> Table:
    return Table(
        id=f"{prefix}-claims-summary",
        title="Claims at a glance",
        columns=["claim", "verdict", "measured"],
        rows=[
            [
                Cell(f"{r.id}: {r.title}"),
                Cell(f"{VERDICT_SYMBOLS[r.verdict]} {r.verdict}", verdict=r.verdict),
                Cell(r.summary),
            ]
            for r in results
        ],
    )


def claim_blocks(result: ClaimResult) -> list[Block]:
    return [
        Verdict(result.id, result.title, result.verdict, result.summary),
        Paragraph(f"**The paper says** (paraphrased): {result.statement}"),
        Paragraph(f"**Rule:** {result.rule}"),
        *result.tables,
    ]


def _figures(
    view: ReportView, prefix: str, threshold: float | None
) -> tuple[list[Block], list[Block]]:
    """(accuracy figures, cost figures) that the group's data supports."""
    datasets = sorted(set(view.group.trials["dataset"].drop_nulls().to_list()))
    accuracy: list[Block] = []
    for ds in datasets:
        ds_slug = slug(ds)
        for fig_id, title, fig in [
            (
                f"{prefix}-fig-acc-b-{ds_slug}",
                f"{ds}: accuracy vs batch size",
                figures.accuracy_vs(view, ds, "batch_size"),
            ),
            (
                f"{prefix}-fig-acc-d-{ds_slug}",
                f"{ds}: accuracy vs embedding dim",
                figures.accuracy_vs(view, ds, "embedding_dim"),
            ),
            (
                f"{prefix}-fig-epochs-{ds_slug}",
                f"{ds}: k-NN accuracy per epoch (best configuration "
                "of each loss; band = 95% CI over seeds)",
                figures.accuracy_per_epoch(view, ds),
            ),
            (
                f"{prefix}-fig-train-loss-{ds_slug}",
                f"{ds}: training loss per epoch (best configuration of each loss; band = 95% "
                "CI over seeds)",
                figures.train_loss_per_epoch(view, ds),
            ),
            (
                f"{prefix}-fig-pareto-{ds_slug}",
                f"{ds}: accuracy against loss-call time",
                figures.pareto(view, ds),
            ),
        ]:
            if fig is not None:
                accuracy.append(Figure(fig_id, title, fig))
    below = f" (below the red line: under {threshold:.0%} of NCA)" if threshold is not None else ""
    cost: list[Block] = []
    for fig_id, title, fig in [
        (
            f"{prefix}-fig-cost",
            "Loss-call cost vs batch size (log-log; legend: fitted slopes)",
            cost_figures.cost_vs_batch(view),
        ),
        (
            f"{prefix}-fig-ratio",
            f"Cost ratio to NCA vs batch size{below}",
            cost_figures.ratio_vs_batch(view, threshold),
        ),
    ]:
        if fig is not None:
            cost.append(Figure(fig_id, title, fig))
    return accuracy, cost


def protocol_section(view: ReportView, prefix: str) -> Section:
    """What the verdicts rest on, first in the group: setup, tuning, failures."""
    blocks: list[Block] = [protocol.setup_items(view)]
    if view.tuned:
        blocks.append(tuning.protocol_items(view))
        blocks += [
            t
            for t in (
                compute.tuning_cost_table(view, prefix),
                tuning.space_table(view, prefix),
                tuning.chosen_table(view, prefix),
            )
            if t
        ]
        for fig_id, title, fig in [
            (
                f"{prefix}-fig-tuning",
                "Tuning curves: best validation score so far per loss",
                tuning_figures.tuning_curves(view),
            ),
            (
                f"{prefix}-fig-sensitivity",
                "Sensitivity: validation score against each tuned value",
                tuning_figures.sensitivity(view),
            ),
        ]:
            if fig is not None:
                blocks.append(Figure(fig_id, title, fig))
    for table in (
        protocol.failed_table(view.failed, f"{prefix}-failed", "Failed trials"),
        protocol.failed_table(
            [r for r in view.tuning if r.get("status") != "ok"],
            f"{prefix}-failed-tuning",
            "Failed tuning trials (each counts against its loss's budget)",
        ),
    ):
        if table is not None:
            blocks.append(table)
    return Section(f"{prefix}-protocol", "Protocol", blocks, level=3)


def group_sections(
    view: ReportView, index: int, claims: list[Claim], out_dir: Path | None = None
) -> list[Section]:
    prefix = f"g{index}"
    group = view.group
    if not group.trials.height:
        # A loss-call profile measures cost only: accuracy and convergence claims get no
        # "no data" sections, they were never in scope.
        claims = [c for c in claims if isinstance(c, CostRatioClaim)]
    results = evaluate_claims(view, claims, prefix)
    acc_figs, cost_figs = _figures(view, prefix, cost_threshold(claims))
    hash_text = f" ({group.suite_hash[:12]})" if group.suite_hash else ""
    head = Section(f"{prefix}-suite", f"Suite {group.name}{hash_text}", [], level=2)
    notes: list[Block] = [Paragraph(text) for text in protocol.verdict_notes(view)]
    notes += [Paragraph(r.note) for r in results if r.note]  # e.g. a metric not the tuning's
    claim_section = Section(
        f"{prefix}-claims",
        "Claims",
        [*notes, claims_summary(results, prefix)] + [b for r in results for b in claim_blocks(r)],
        level=3,
    )
    acc_blocks: list[Block] = [*tables.accuracy_tables(view, prefix)]
    best = tables.best_config_table(view, prefix)
    if best is not None:
        acc_blocks.append(best)
    acc_blocks += acc_figs
    cost_blocks: list[Block] = [
        t
        for t in (
            cost_tables.profile_cost_table(view, prefix),
            cost_tables.trial_cost_table(view, prefix),
            cost_tables.slope_table(view, prefix),
        )
        if t is not None
    ]
    cost_blocks += cost_figs
    sections = [head, protocol_section(view, prefix), claim_section]
    if acc_blocks:
        sections.append(Section(f"{prefix}-accuracy", "Accuracy", acc_blocks, level=3))
    if cost_blocks:
        sections.append(Section(f"{prefix}-cost", "Cost per loss call", cost_blocks, level=3))
    run_blocks: list[Block] = [tables.header(view, out_dir)]
    if (times := compute.trial_time_table(view, prefix)) is not None:
        run_blocks.append(times)
    sections.append(Section(f"{prefix}-run", "Run", run_blocks, level=3))
    return sections


def build_model(
    run_dirs: list[Path], claims_path: Path | None = None, out_dir: Path | None = None
) -> Report:
    """The report model of these run directories (one group per suite hash); out_dir, where
    the report goes, makes the run directories it names relative to it."""
    groups = load_groups(run_dirs)
    claims = load_claims(claims_path)
    sections: list[Section] = []
    for i, group in enumerate(groups, start=1):
        sections += group_sections(build_view(group), i, claims, out_dir)
    if len(groups) > 1:
        note = Paragraph(
            f"{len(groups)} different suites: each has its own section; their "
            "numbers are never averaged together."
        )
        sections.insert(0, Section("suites", "Suites", [note], level=2))
    title = "halbench report: " + ", ".join(dict.fromkeys(g.name for g in groups))
    return Report(title, sections)


def build_report(
    run_dirs: list[Path], out_dir: Path, claims_path: Path | None = None
) -> dict[str, Path]:
    """Write report.md and report.html for these run directories into out_dir.

    Each file is written atomically (a full disk or a kill leaves the old file or none, never a
    truncated one); a directory that cannot be written is a UserError naming it.
    """
    from halbench.report import png
    from halbench.report.html import render_html
    from halbench.report.markdown import render_markdown

    out_dir = Path(out_dir)
    report = build_model([Path(d) for d in run_dirs], claims_path, out_dir)
    md = out_dir / "report.md"
    html = out_dir / "report.html"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        figs = [b for s in report.sections for b in s.blocks if isinstance(b, Figure)]
        written = png.export_all(figs, out_dir)
        write_text_atomic(md, render_markdown(report, out_dir, html.name, written))
        write_text_atomic(html, render_html(report))
    except OSError as err:
        where = err.filename or out_dir
        raise UserError(f"{where}: cannot write the report ({err.strerror or err})") from err
    return {"markdown": md, "html": html}
