"""`build_report`: read every run record under RUNS and write report.md, report.html, summary.json and plots.

Each data set (manifest hash) gets its own section; rows, paired tests and break-even figures are computed
within a data set only, because numbers on different images are not comparable.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from headstart.io import write_bytes_atomic
from headstart.evaluation.metrics import as_proba
from headstart.errors import ConfigError, DataError, one_line
from headstart.evaluation import SELECT_METRICS
from headstart.evaluation.records import jsonable, read_records
from headstart.evaluation.report import plots
from headstart.evaluation.report.audit import audit_section
from headstart.evaluation.report.comparisons import paired_comparisons
from headstart.evaluation.report.document import Block, BulletList, Heading, Image, Paragraph, Table
from headstart.evaluation.report.render import render_html, render_markdown
from headstart.evaluation.report.summary import (
    DatasetGroup, Row, all_finite, break_even, build_rows, group_by_dataset, row_summary,
)
from headstart.evaluation.table import MISSING, fmt_ci, fmt_mean_std, fmt_value

logger = logging.getLogger(__name__)

TITLE = "headstart comparison report"
PLOTS_DIR = "plots"

DEFINITIONS = [
    "Metric cells: mean ± sample standard deviation over seeds (training variability), then in brackets the 95% "
    "stratified bootstrap interval of the lowest seed's run (test-set sampling variability). One seed: no ± part.",
    "Sensitivity and specificity are measured on test at the decision threshold chosen on validation and frozen "
    "before test was scored (each run its own threshold). AUROC is threshold-free.",
    "train s: wall seconds of training as recorded by each run. A fine-tune counts every epoch's train and val "
    "pass. A cached-head run (one record) counts the whole hyperparameter sweep of its head type on the cached "
    "features, plus any refit. eval s: the final val + test scoring. extract s: the one-time cost of computing "
    "the backbone's cached features, shared by every head run.",
    "Break-even, with E = extraction seconds, H = mean train seconds of one cached-head run (a whole sweep) and "
    "F = train seconds of one fine-tune: 'head runs per fine-tune' = F / H; 'head runs within one fine-tune' = "
    "floor((F - E) / H), the head runs that fit in one fine-tune's time after paying for the extraction; "
    "'cache pays off after' = the smallest k with E + k·H <= k·F, the number of experiments after which running "
    "each as a cached head instead of a fine-tune has repaid the extraction ('never' when F <= H).",
    "Paired tests compare the best cached head of a backbone (highest mean validation metric across seeds) with "
    "each fine-tune of that backbone, on the lowest-seed run of each, aligned by test image id: DeLong for AUROC "
    "(difference = head - fine-tune, with its 95% interval) and McNemar for accuracy at each run's own frozen "
    "threshold (b = images only the head gets right, c = only the fine-tune; exact binomial when b + c < 25).",
    "Timings come from whatever machine each run used (see the device column); compare them only within one "
    "machine, and note that fine-tunes may run at a different image size than the extraction.",
]


@dataclass
class ReportResult:
    """Where the report went and what it covered."""

    output_dir: Path
    report_md: Path
    report_html: Path
    summary_json: Path
    n_records: int = 0
    n_datasets: int = 0
    plots: list[Path] = field(default_factory=list)


def build_report(*, runs_dir: str | Path, output_dir: str | Path | None = None,
                 select_metric: str = "auroc") -> ReportResult:
    """Write the comparison report for every record under `runs_dir` (default output: `runs_dir/report`).

    Unreadable records are skipped with a warning (by `read_records`); no readable record is a DataError.
    `select_metric` is the validation metric that picks each backbone's best cached head for the paired tests.
    """
    if select_metric not in SELECT_METRICS:
        raise ConfigError(f"select metric {select_metric!r} is unknown; expected one of {', '.join(SELECT_METRICS)}")
    runs_dir = Path(runs_dir)
    output_dir = Path(output_dir) if output_dir is not None else runs_dir / "report"
    records = read_records(runs_dir)
    groups = group_by_dataset(records)
    (output_dir / PLOTS_DIR).mkdir(parents=True, exist_ok=True)

    blocks: list[Block] = [
        Heading(1, TITLE),
        Paragraph(f"{len(records)} run records from {runs_dir}, written "
                  f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}."),
    ]
    if len(groups) > 1:
        blocks.append(Paragraph(
            f"These records come from {len(groups)} different data sets (different manifest hashes). Each data set "
            "has its own section below; no table, test or break-even figure mixes data sets."))
    blocks += [Heading(2, "Definitions"), BulletList(DEFINITIONS)]

    summary = {"title": TITLE, "runs_dir": str(runs_dir), "select_metric": select_metric,
               "definitions": DEFINITIONS, "datasets": []}
    written: list[Path] = []
    for group in groups:
        section, data, images = _dataset_section(group, select_metric=select_metric, several=len(groups) > 1)
        blocks += section
        summary["datasets"].append(data)
        for image in images:
            target = output_dir / image.path
            write_bytes_atomic(target, image.png)
            written.append(target)

    blocks += audit_section(runs_dir, summary)  # each audit.json under RUNS (`headstart audit CACHE -o RUNS/...`)
    result = ReportResult(output_dir=output_dir, report_md=output_dir / "report.md",
                          report_html=output_dir / "report.html", summary_json=output_dir / "summary.json",
                          n_records=len(records), n_datasets=len(groups), plots=written)
    write_bytes_atomic(result.report_md, render_markdown(blocks).encode("utf-8"))
    write_bytes_atomic(result.report_html, render_html(blocks, title=TITLE).encode("utf-8"))
    text = json.dumps(jsonable(summary), indent=2, sort_keys=True, allow_nan=False) + "\n"
    write_bytes_atomic(result.summary_json, text.encode("utf-8"))
    logger.info("wrote %s, %s and %s (%d plots)", result.report_md, result.report_html, result.summary_json,
                len(written))
    return result


def _dataset_section(group: DatasetGroup, *, select_metric: str,
                     several: bool) -> tuple[list[Block], dict, list[Image]]:
    rows = build_rows(group.records)
    summaries = [row_summary(row) for row in rows]
    costs = break_even(rows)
    tests = paired_comparisons(rows, select_metric=select_metric)
    images = _figures(group, rows, prefix=group.tag if several else "")

    title = f"Data set {group.tag}" if several else "Data set"
    blocks: list[Block] = [
        Heading(2, f"{title}: {', '.join(group.classes) or 'unknown classes'}"),
        Paragraph(f"{len(group.records)} runs; manifest hash {group.manifest_hash}"
                  + (f"; source {', '.join(group.sources)}" if group.sources else "") + "."),
        Heading(3, "Results on test"),
        _results_table(summaries),
    ]
    n_random = sum(str(s["weights"]).startswith("random") for s in summaries)
    if n_random:
        blocks.append(Paragraph(
            f"Warning: {n_random} of {len(summaries)} rows used randomly initialised weights. Their pipeline and "
            "timings are real, but their accuracy says nothing about what pretrained features achieve."))
    blocks.append(Heading(3, "Cost and break-even"))
    if costs:
        blocks += [_break_even_table(costs), BulletList([_break_even_sentence(cost) for cost in costs])]
    else:
        blocks.append(Paragraph("No backbone has both cached-head and fine-tune runs; break-even not computed."))
    blocks.append(Heading(3, f"Paired tests: best cached head (by val {select_metric}) vs fine-tune"))
    blocks.append(_paired_table(tests) if tests else
                  Paragraph("No backbone has both cached-head and fine-tune runs; no paired tests."))
    blocks.append(Heading(3, "Figures"))
    blocks += images
    data = {"manifest_hash": group.manifest_hash, "classes": group.classes, "sources": group.sources,
            "n_records": len(group.records), "rows": summaries, "break_even": costs, "paired_tests": tests,
            "plots": [image.path for image in images]}
    return blocks, data, images


def _figures(group: DatasetGroup, rows: list[Row], *, prefix: str) -> list[Image]:
    """ROC, confusion matrices and timing bars for the data set, then one history figure per run that has one."""
    stem = f"{PLOTS_DIR}/{prefix + '_' if prefix else ''}"
    curves = []
    for row in rows:
        test = row.reference.predictions.get("test") or {}
        try:
            y = np.asarray(test["y_true"], dtype=np.int64)
            proba = as_proba(np.asarray(test["proba"], dtype=np.float64), n=y.size)
        except (KeyError, TypeError, ValueError, DataError) as error:  # a malformed record loses its curve only
            logger.warning("no ROC curve for %s: %s", row.reference.run_id, one_line(error))
            continue
        if proba.shape[1] == 2:
            auroc = row.reference.metrics.get("test", {}).get("auroc")
            curves.append((f"{row.backbone} {row.label} (AUROC {fmt_value(auroc)})", y, proba[:, 1]))
    candidates = [
        (f"{stem}roc.png", "ROC curves on test (lowest-seed run of each row)",
         plots.roc_figure(curves, title="ROC on test")),
        (f"{stem}confusion.png", "Confusion matrices on test at the validation-chosen threshold",
         plots.confusion_figure([(_confusion_title(row), row.reference.metrics.get("test", {}).get("confusion_matrix"))
                                 for row in rows], classes=group.classes)),
        (f"{stem}timing.png", "Wall time per row: extraction, training and evaluation seconds",
         plots.timing_figure([(f"{row.backbone} {row.label}", row_summary(row)["timing"]) for row in rows])),
    ]
    for record in group.records:
        candidates.append((f"{PLOTS_DIR}/history_{record.run_id}.png",
                           f"Loss and accuracy per epoch, train vs val: {record.run_id}",
                           plots.history_figure(record)))
    return [Image(path=path, alt=alt, png=png) for path, alt, png in candidates if png is not None]


def _confusion_title(row: Row) -> str:
    threshold = row.reference.threshold
    return f"{row.backbone} {row.label}\n(threshold {fmt_value(threshold)})"


def _metric_cell(metric: dict) -> str:
    text = fmt_mean_std(metric.get("mean"), metric.get("std"))
    ci = metric.get("ci")
    if text != MISSING and isinstance(ci, (list, tuple)) and len(ci) == 2 and all_finite(*ci):
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return text


def _results_table(summaries: list[dict]) -> Table:
    headers = ["strategy", "backbone", "head", "seeds", "test AUROC", "test accuracy", "test balanced accuracy",
               "sensitivity @ val thr", "specificity @ val thr", "train s", "extract s (one-time)", "eval s",
               "weights", "device"]
    rows = []
    for s in summaries:
        test, timing = s["test"], s["timing"]
        extract = _seconds(timing["extract_seconds"]) if s["strategy"] == "cached-head" else "n/a"
        rows.append([
            s["strategy"], s["backbone"], s["label"], str(len(s["seeds"])),
            _metric_cell(test["auroc"]), _metric_cell(test["accuracy"]), _metric_cell(test["balanced_accuracy"]),
            fmt_mean_std(test["sensitivity"]["mean"], test["sensitivity"]["std"]),
            fmt_mean_std(test["specificity"]["mean"], test["specificity"]["std"]),
            _seconds(timing["train_seconds"]), extract, _seconds(timing["eval_seconds"]), str(s["weights"] or MISSING),
            str(s["device"] or MISSING),
        ])
    return Table(headers=headers, rows=rows, numeric=[False, False, False] + [True] * 9 + [False, False])


def _break_even_table(costs: list[dict]) -> Table:
    headers = ["backbone", "fine-tune", "extract s (E)", "head run s (H)", "fine-tune s (F)", "head runs per fine-tune",
               "head runs within one fine-tune", "cache pays off after"]
    rows = [[
        c["backbone"], c["finetune_label"], _seconds(c["extract_seconds"]), _seconds(c["head_train_seconds_mean"]),
        _seconds(c["finetune_train_seconds"]), fmt_value(c["heads_per_finetune"], digits=1),
        fmt_value(c["heads_within_one_finetune"]),
        "never" if c["break_even_experiments"] is None else _experiments(c["break_even_experiments"]),
    ] for c in costs]
    return Table(headers=headers, rows=rows, numeric=[False, False] + [True] * 6)


def _break_even_sentence(cost: dict) -> str:
    per = fmt_value(cost["heads_per_finetune"], digits=0)
    pays = ("the cache never pays for itself (a head run is not cheaper than a fine-tune)"
            if cost["break_even_experiments"] is None
            else f"the extraction has paid for itself after {_experiments(cost['break_even_experiments'])}")
    return (f"{cost['backbone']}: one {cost['finetune_label']} costs as much training time as {per} cached-head runs; "
            f"{pays}.")


def _paired_table(tests: list[dict]) -> Table:
    headers = ["backbone", "cached head", "fine-tune", "n", "AUROC head", "AUROC fine-tune",
               "difference [95% CI]", "DeLong p", "McNemar b / c", "McNemar p", "note"]
    rows = []
    for t in tests:
        delong, mcnemar = t.get("delong") or {}, t.get("mcnemar") or {}
        diff = fmt_ci(delong.get("diff"), delong.get("ci_diff"))
        rows.append([
            t["backbone"], t["a_label"], t["b_label"], str(t["n"]),
            fmt_value(delong.get("auroc_a")), fmt_value(delong.get("auroc_b")), diff, _p_value(delong.get("p_value")),
            f"{mcnemar['b']} / {mcnemar['c']}" if mcnemar else MISSING,
            _p_value(mcnemar.get("p_value")), t.get("note") or "",
        ])
    return Table(headers=headers, rows=rows, numeric=[False, False, False] + [True] * 7 + [False])


def _experiments(k: int) -> str:
    return f"{k} experiment" + ("" if k == 1 else "s")


def _p_value(value: object) -> str:
    if not all_finite(value):
        return MISSING
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _seconds(value: object) -> str:
    """Seconds with precision that suits the size: 0.0123, 4.56, 789."""
    if not all_finite(value):
        return MISSING
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"

