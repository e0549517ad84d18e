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
from headstart.evaluation.records import RECORD_NAME, jsonable, read_records
from headstart.evaluation.report import plots
from headstart.evaluation.report.audit import audit_section
from headstart.evaluation.report.comparisons import paired_comparisons
from headstart.evaluation.report.cost import cost_figure, cost_points
from headstart.evaluation.report.curves import attach_curves, curve_section
from headstart.evaluation.report.history import history_grid
from headstart.evaluation.report.multiclass import is_multiclass, multiclass_section
from headstart.evaluation.report.multilabel import multilabel_section, paired_blocks
from headstart.evaluation.report.multilabel_paired import is_multilabel
from headstart.evaluation.report.verdict import verdict
from headstart.evaluation.report.document import Block, BulletList, Heading, Image, Paragraph, Table
from headstart.evaluation.report.render import render_html, render_markdown
from headstart.evaluation.report.summary import (
    DatasetGroup, Row, all_finite, break_even, build_rows, group_by_dataset, row_summary,
)
from headstart.evaluation.table import MISSING, fmt_ci, fmt_mean_std, fmt_mean_std_ci, fmt_p, fmt_seconds, fmt_value
from headstart.evaluation.curve_doc import read_curves
from headstart.tasks.factory import task_for_proba

logger = logging.getLogger(__name__)

TITLE = "headstart comparison report"
PLOTS_DIR = "plots"

DEFINITIONS = [
    "Metric cells: mean ± sample standard deviation over seeds (training variability), then in brackets the 95% "
    "stratified bootstrap interval of the lowest seed's run (test-set sampling variability). One seed: no ± part. "
    "Where the cache knows patients (/samples/group) and a patient holds several images, the bootstrap resamples "
    "patients, stratified by class (a cluster bootstrap); the line under the table names the method and count.",
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
    "(clustered by patient where patients hold several images, Obuchowski 1997, and n then also names the "
    "patients; difference = head - fine-tune, with its 95% interval) and McNemar for accuracy at each run's own frozen "
    "threshold (b = images only the head gets right, c = only the fine-tune; exact binomial when b + c < 25).",
    "Timings come from whatever machine each run used (see the device column); compare them only within one "
    "machine, and note that fine-tunes may run at a different image size than the extraction.",
    "Cost against accuracy: one point per backbone and strategy, its best configuration by the validation metric; "
    "x = measured seconds (a cached head: extraction + training of its sweep; a fine-tune: training), y = test "
    "AUROC with the lowest seed's 95% interval. The Pareto front joins the points no other point beats on both.",
    "Learning curves: each size is drawn several times (whole patients, stratified by class); a point is the "
    "mean test metric over the draws at the mean realised n, its band the t-interval of that mean (the whole "
    "train split is one draw: its bootstrap interval). The dashed line is the plateau a of the fitted power law "
    "a - b n^(-c). The crossover is the smallest n at which a fine-tune's interval lies entirely above the "
    "head's at the same size.",
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
    n_curves: int = 0
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
    records, curves = _read_runs(runs_dir)
    groups = attach_curves(group_by_dataset(records), curves)
    (output_dir / PLOTS_DIR).mkdir(parents=True, exist_ok=True)

    blocks: list[Block] = [
        Heading(1, TITLE),
        Paragraph(f"{len(records)} run records and {len(curves)} learning curves from {runs_dir}, written "
                  f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}."),
        Heading(2, "Verdict"),
    ]
    if len(groups) > 1:
        blocks.append(Paragraph(
            f"These records come from {len(groups)} different data sets (different manifest hashes). Each data set "
            "has its own section below; no table, test or break-even figure mixes data sets."))

    summary = {"title": TITLE, "runs_dir": str(runs_dir), "select_metric": select_metric,
               "definitions": DEFINITIONS, "datasets": []}
    written: list[Path] = []
    sections: list[Block] = []
    for group in groups:
        section, data, images = _dataset_section(group, select_metric=select_metric, several=len(groups) > 1)
        sentences = data["verdict"]
        blocks.append(Paragraph((f"Data set {group.tag}: " if len(groups) > 1 else "") + " ".join(sentences)))
        sections += section
        summary["datasets"].append(data)
        for image in images:
            target = output_dir / image.path
            write_bytes_atomic(target, image.png)
            written.append(target)
    blocks += sections + [Heading(2, "Definitions"), BulletList(DEFINITIONS)]

    blocks += audit_section(runs_dir, summary)  # each audit.json under RUNS (`headstart audit CACHE -o RUNS/...`)
    result = ReportResult(output_dir=output_dir, report_md=output_dir / "report.md",
                          report_html=output_dir / "report.html", summary_json=output_dir / "summary.json",
                          n_records=len(records), n_datasets=len(groups), n_curves=len(curves), plots=written)
    write_bytes_atomic(result.report_md, render_markdown(blocks).encode("utf-8"))
    write_bytes_atomic(result.report_html, render_html(blocks, title=TITLE).encode("utf-8"))
    text = json.dumps(jsonable(summary), indent=2, sort_keys=True, allow_nan=False) + "\n"
    write_bytes_atomic(result.summary_json, text.encode("utf-8"))
    logger.info("wrote %s, %s and %s (%d plots)", result.report_md, result.report_html, result.summary_json,
                len(written))
    return result


def _read_runs(runs_dir: Path) -> tuple[list, list[dict]]:
    """The records and the curves under RUNS; a folder with neither is a DataError naming both commands."""
    curves = read_curves(runs_dir) if runs_dir.is_dir() else []
    if curves and not any(runs_dir.glob(f"*/{RECORD_NAME}")):
        return [], curves
    try:
        return read_records(runs_dir), curves
    except DataError as error:
        if curves:  # record files that are all unreadable: report the curves, the warnings named the files
            return [], curves
        raise DataError(f"{one_line(error)}, or `headstart curve` for learning curves") from None


def _dataset_section(group: DatasetGroup, *, select_metric: str,
                     several: bool) -> tuple[list[Block], dict, list[Image]]:
    rows = build_rows(group.records)
    summaries = [row_summary(row) for row in rows]
    costs = break_even(rows)
    tests = paired_comparisons(rows, select_metric=select_metric)
    stem = f"{PLOTS_DIR}/{group.tag + '_' if several else ''}"
    points = cost_points(rows, select_metric=select_metric)
    curve_blocks, curve_data, curve_images = curve_section(group, stem=stem)
    images = _figures(group, rows, stem=stem, points=points)

    title = f"Data set {group.tag}" if several else "Data set"
    blocks: list[Block] = [
        Heading(2, f"{title}: {', '.join(group.classes) or 'unknown classes'}"),
        Paragraph(f"{len(group.records)} runs and {len(group.curves)} learning curves; manifest hash "
                  f"{group.manifest_hash}" + (f"; source {', '.join(group.sources)}" if group.sources else "") + "."),
    ]
    data = {"manifest_hash": group.manifest_hash, "classes": group.classes, "sources": group.sources,
            "n_records": len(group.records), "rows": summaries, "break_even": costs, "paired_tests": tests,
            "cost_accuracy": points, **curve_data,
            "verdict": verdict(rows, curves=group.curves, crossovers=[c for curve in curve_data.get("curves", [])
                                                                      for c in curve["crossovers"]],
                               select_metric=select_metric, tests=tests),
            "plots": [image.path for image in curve_images + images]}
    if not rows:
        return blocks + curve_blocks, data, curve_images
    blocks += [Heading(3, "Results on test"), _results_table(summaries), Paragraph(interval_sentence(rows))]
    n_random = sum(str(s["weights"]).startswith("random") for s in summaries)
    if n_random:
        blocks.append(Paragraph(
            f"Warning: {n_random} of {len(summaries)} rows used randomly initialised weights. Their pipeline and "
            "timings are real, but their accuracy says nothing about what pretrained features achieve."))
    multilabel = any(is_multilabel(row.reference) for row in rows)
    if multilabel:  # per-finding table, heatmap, ROC small multiples, label counts
        task_blocks, task_data, task_images = multilabel_section(rows, stem=stem, select_metric=select_metric)
        blocks.append(Paragraph("Multi-label task: test AUROC is the macro mean over the findings with both classes "
                                "on test; accuracy-type columns do not apply (each finding's sensitivity and specificity at its own "
                                "frozen threshold are in the record, metrics.test.per_label)."))
        images += task_images
        data["plots"] += [image.path for image in task_images]
    elif is_multiclass(rows, group.classes):  # per-class AUROC and the K x K confusion of the best runs
        task_blocks, task_data = multiclass_section(rows, group.classes, select_metric=select_metric)
        task_images = []
    else:
        task_blocks, task_data, task_images = [], {"task": "binary"}, []
    blocks += task_blocks
    data.update(task_data)
    blocks.append(Heading(3, "Cost and break-even"))
    if costs:
        blocks += [_break_even_table(costs), BulletList([_break_even_sentence(cost) for cost in costs])]
    else:
        blocks.append(Paragraph("No backbone has both cached-head and fine-tune runs; break-even not computed."))
    blocks.append(Heading(3, f"Paired tests: best cached head (by val {select_metric}) vs fine-tune"))
    if not tests:
        blocks.append(Paragraph("No backbone has both cached-head and fine-tune runs; no paired tests."))
    else:
        blocks += paired_blocks(tests) if multilabel else [_paired_table(tests)]
    blocks += curve_blocks
    blocks.append(Heading(3, "Figures"))
    blocks += [image for image in images if image not in task_images]
    return blocks, data, curve_images + images


def _figures(group: DatasetGroup, rows: list[Row], *, stem: str, points: list[dict]) -> list[Image]:
    """Cost against accuracy, ROC, confusion matrices and timing bars, then one history grid per backbone."""
    curves = []
    for row in (row for row in rows if not is_multilabel(row.reference)):  # multi-label: ROC per finding
        test = row.reference.predictions.get("test") or {}
        try:
            y = np.asarray(test["y_true"], dtype=np.int64)
            proba = as_proba(np.asarray(test["proba"], dtype=np.float64), n=y.size)
        except (KeyError, TypeError, ValueError, DataError) as error:  # a malformed record loses its curve only
            logger.warning("no ROC curve for %s: %s", row.reference.run_id, one_line(error))
            continue
        positive = task_for_proba(proba).positive_scores(proba)
        if positive is not None:
            auroc = row.reference.metrics.get("test", {}).get("auroc")
            curves.append((f"{row.backbone} {row.label} (AUROC {fmt_value(auroc)})", y, positive))
    candidates = [
        (f"{stem}cost_accuracy.png", "Test AUROC against measured seconds (extraction + training, log scale), best "
         "configuration per backbone and strategy, GFLOPs in the labels, Pareto front dashed", cost_figure(points)),
        (f"{stem}roc.png", "ROC curves on test (lowest-seed run of each row)",
         plots.roc_figure(curves, title="ROC on test")),
        (f"{stem}confusion.png", "Confusion matrices on test at the validation-chosen threshold",
         plots.confusion_figure([(_confusion_title(row), row.reference.metrics.get("test", {}).get("confusion_matrix"))
                                 for row in rows], classes=group.classes)),
        (f"{stem}timing.png", "Wall time per row: extraction, training and evaluation seconds",
         plots.timing_figure([(f"{row.backbone} {row.label}", row_summary(row)["timing"]) for row in rows])),
    ]
    for backbone in sorted({row.backbone for row in rows}):
        png, left_out = history_grid(backbone, rows)
        more = f" (not shown: {', '.join(left_out)})" if left_out else ""
        candidates.append((f"{stem}history_{_file_safe(backbone)}.png",
                           f"{backbone}: loss and accuracy per epoch, train vs val, one row per configuration{more}",
                           png))
    return [Image(path=path, alt=alt, png=png) for path, alt, png in candidates if png is not None]


def _file_safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in name)


def _confusion_title(row: Row) -> str:
    threshold = row.reference.threshold
    return f"{row.backbone} {row.label}\n(threshold {fmt_value(threshold)})"


def _metric_cell(metric: dict) -> str:
    ci = metric.get("ci")
    return fmt_mean_std_ci(metric.get("mean"), metric.get("std"), ci if isinstance(ci, (list, tuple)) else None)


def _results_table(summaries: list[dict]) -> Table:
    headers = ["strategy", "backbone", "head", "seeds", "test AUROC", "test accuracy", "test balanced accuracy",
               "sensitivity @ val thr", "specificity @ val thr", "train s", "extract s (one-time)", "eval s",
               "weights", "device"]
    rows = []
    for s in summaries:
        test, timing = s["test"], s["timing"]
        extract = fmt_seconds(timing["extract_seconds"]) if s["strategy"] == "cached-head" else "n/a"
        rows.append([
            s["strategy"], s["backbone"], s["label"], str(len(s["seeds"])),
            _metric_cell(test["auroc"]), _metric_cell(test["accuracy"]), _metric_cell(test["balanced_accuracy"]),
            fmt_mean_std(test["sensitivity"]["mean"], test["sensitivity"]["std"]),
            fmt_mean_std(test["specificity"]["mean"], test["specificity"]["std"]),
            fmt_seconds(timing["train_seconds"]), extract, fmt_seconds(timing["eval_seconds"]),
            str(s["weights"] or MISSING), str(s["device"] or MISSING),
        ])
    return Table(headers=headers, rows=rows, numeric=[False, False, False] + [True] * 9 + [False, False])


def _break_even_table(costs: list[dict]) -> Table:
    headers = ["backbone", "fine-tune", "extract s (E)", "head run s (H)", "fine-tune s (F)", "head runs per fine-tune",
               "head runs within one fine-tune", "cache pays off after"]
    rows = [[
        c["backbone"], c["finetune_label"], fmt_seconds(c["extract_seconds"]),
        fmt_seconds(c["head_train_seconds_mean"]),
        fmt_seconds(c["finetune_train_seconds"]), fmt_value(c["heads_per_finetune"], digits=1),
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
            t["backbone"], t["a_label"], t["b_label"],
            str(t["n"]) + (f" ({delong['n_clusters']} patients)" if delong.get("method") == "clustered-delong" else ""),
            fmt_value(delong.get("auroc_a")), fmt_value(delong.get("auroc_b")), diff, fmt_p(delong.get("p_value")),
            f"{mcnemar['b']} / {mcnemar['c']}" if mcnemar else MISSING,
            fmt_p(mcnemar.get("p_value")), t.get("note") or "",
        ])
    return Table(headers=headers, rows=rows, numeric=[False, False, False] + [True] * 7 + [False])


def interval_sentence(rows: list[Row]) -> str:
    """How the test intervals were computed: the method and the number of patients (or images) behind them."""
    seen = sorted({(str(m.get("ci_method") or "bootstrap"), m.get("n_clusters"), m.get("n"))
                   for row in rows for m in [row.reference.metrics.get("test", {})]}, key=str)
    parts = [f"a cluster bootstrap over {k} patients" + (f" ({n} images)" if n else "") if method == "cluster-bootstrap"
             else "a bootstrap over images (no patient holds two images, or none is known)" for method, k, n in seen]
    return "Test intervals: " + "; ".join(dict.fromkeys(parts)) + "."


def _experiments(k: int) -> str:
    return f"{k} experiment" + ("" if k == 1 else "s")
