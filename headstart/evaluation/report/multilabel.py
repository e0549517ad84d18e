"""The multi-label part of a data set's section: labels, per-finding AUROC table, heatmap, ROC small multiples,
and the per-finding paired tests.

Everything is read from the records (`metrics.test.per_label`, `predictions.<split>` with its `mask`), so the
report needs no cache. A finding with one class among a split's scored images has a null AUROC in the record;
it is shown as "n/a (one class)", never as a number and never dropped.
"""

from __future__ import annotations

import logging

import numpy as np

from headstart.errors import DataError, one_line
from headstart.evaluation.report import plots
from headstart.evaluation.report.cost import best_finetune
from headstart.evaluation.report.document import Block, Heading, Image, Paragraph, Table
from headstart.evaluation.report.multilabel_paired import ONE_CLASS, findings, labelled_test
from headstart.evaluation.report.summary import Row, all_finite, best_by_val, best_cached_head
from headstart.evaluation.table import MISSING, aggregate_seeds, fmt_ci, fmt_mean_std_ci, fmt_p, fmt_value

logger = logging.getLogger(__name__)

MAX_COLUMNS = 6  # runs shown side by side in the per-finding table (the heatmap shows every row)
SPLITS = ("val", "test")  # the splits whose labels the records hold


def best_columns(rows: list[Row], *, select_metric: str) -> list[Row]:
    """The best runs to set side by side: per backbone, its best cached head and its best fine-tune (val)."""
    picked = []
    for backbone in sorted({row.backbone for row in rows}):
        for row in (best_cached_head(rows, backbone=backbone, select_metric=select_metric),
                    best_finetune(rows, backbone=backbone, select_metric=select_metric)):
            if row is not None:
                picked.append(row)
    return picked[:MAX_COLUMNS]


def finding_auroc(row: Row, name: str) -> dict:
    """Seed mean and std of one finding's test AUROC, the lowest seed's interval, and why it is null if it is."""
    values = [((run.metrics.get("test") or {}).get("per_label") or {}).get(name) or {} for run in row.runs]
    mean, std = aggregate_seeds([v.get("auroc") for v in values])
    ci = values[0].get("auroc_ci")
    reason = values[0].get("reason") or (None if all_finite(mean) else "no AUROC in the record")
    return {"mean": mean, "std": std, "ci": ci if isinstance(ci, (list, tuple)) else None,
            "reason": None if all_finite(mean) else reason}


def finding_cell(stats: dict) -> str:
    if all_finite(stats["mean"]):
        return fmt_mean_std_ci(stats["mean"], stats["std"], stats["ci"])
    return ONE_CLASS if "one class" in str(stats["reason"]) else f"n/a ({stats['reason']})"


def label_stats(record, names: list[str]) -> dict:
    """Per split and finding: scored images, positives, prevalence and masked labels; co-occurrence counts of
    positives over the val and test images (train labels are not in the records)."""
    out: dict = {"source": record.run_id, "splits": {}, "cooccurrence": None}
    positives = []
    for split in SPLITS:
        data = record.predictions.get(split) or {}
        try:
            y = np.asarray(data["y_true"], dtype=np.float64)
            mask = np.asarray(data["mask"], dtype=bool) if data.get("mask") is not None else np.ones(y.shape, bool)
            if y.ndim != 2 or y.shape[1] != len(names) or mask.shape != y.shape:
                raise DataError(f"labels {y.shape} and mask {mask.shape}; expected (n, {len(names)})")
        except (KeyError, TypeError, ValueError, DataError) as error:
            logger.warning("no %s label counts from %s: %s", split, record.run_id, one_line(error))
            continue
        mask &= np.isin(y, (0, 1))
        pos = mask & (y == 1)
        positives.append(pos)
        out["splits"][split] = {name: {"n": int(mask[:, j].sum()), "n_pos": int(pos[:, j].sum()),
                                       "n_masked": int((~mask[:, j]).sum()),
                                       "prevalence": float(pos[:, j].sum() / mask[:, j].sum())
                                       if mask[:, j].any() else None}
                                for j, name in enumerate(names)}
    if positives:
        both = np.concatenate(positives).astype(np.int64)
        out["cooccurrence"] = (both.T @ both).tolist()
    return out


def multilabel_section(rows: list[Row], *, stem: str, select_metric: str) -> tuple[list[Block], dict, list[Image]]:
    """Blocks, summary data and figures of the multi-label part of one data set's section."""
    names = findings(rows[0].reference)
    columns = best_columns(rows, select_metric=select_metric)
    stats = label_stats(rows[0].reference, names)
    data = {"task": "multilabel", "findings": names, "labels": stats,
            "per_finding": {name: {_title(row): finding_auroc(row, name) for row in rows} for name in names},
            "per_finding_columns": [_title(row) for row in columns]}
    blocks: list[Block] = [Heading(3, "Labels: prevalence and co-occurrence"), *_label_blocks(stats, names),
                           Heading(3, "Per-finding test AUROC"),
                           Paragraph("Findings as rows, the best runs as columns (per backbone: its best cached head "
                                     f"and its best fine-tune by val {select_metric}). Cells: mean ± std over seeds "
                                     "[95% interval of the lowest seed]. The macro AUROC averages the findings with "
                                     f"both classes; {ONE_CLASS} marks a finding whose test images are all positive "
                                     "or all negative."),
                           _finding_table(names, columns, stats)]
    images = []
    heat = np.array([[finding_auroc(row, name)["mean"] for name in names] for row in rows], dtype=np.float64)
    png = plots.heatmap_figure(heat, rows=[_title(row) for row in rows], columns=names,
                               title="Test AUROC per finding (rows: runs; grey: n/a, one class)")
    if png is not None:
        images.append(Image(path=f"{stem}finding_heatmap.png", alt="Heatmap of test AUROC per finding and run",
                            png=png))
    best = best_by_val([row for row in rows if not row.reference.config.get("train_size")], select_metric=select_metric)
    png = _roc_grid(best, names) if best is not None else None
    if png is not None:
        data["roc_run"] = best.reference.run_id
        images.append(Image(path=f"{stem}finding_roc.png", alt=f"ROC per finding on test for {_title(best)}",
                            png=png))
    data["plots"] = [image.path for image in images]
    return blocks + images, data, images


def paired_blocks(tests: list[dict]) -> list[Block]:
    """Per pair: the macro-AUROC bootstrap in a sentence, then one row per finding (DeLong, Holm)."""
    blocks: list[Block] = [Paragraph(
        "Per finding: DeLong (clustered by patient where the records name patients) on the test images whose "
        "label both runs scored, difference = head - fine-tune, "
        "p-values Holm-corrected across the findings with both classes (family-wise 5%). Macro AUROC: a paired "
        "bootstrap of the difference, both runs on each resample, whole patients resampled where the records name "
        "them; two-sided bootstrap p.")]
    for t in tests:
        title = f"{t['backbone']}: {t['a_label']} (cached head) vs {t['b_label']}"
        if t.get("note"):
            blocks.append(Paragraph(f"{title}: not tested ({t['note']})."))
            continue
        blocks.append(Paragraph(f"{title}, {t['n']} test images: {macro_sentence(t['macro'])}"))
        rows = [[e["finding"], str(e["n"]), str(e["n_pos"]), fmt_value(e["auroc_a"]), fmt_value(e["auroc_b"]),
                 fmt_ci(e["diff"], e["ci_diff"]) if e["note"] is None else ONE_CLASS,
                 fmt_p(e["p_value"]), fmt_p(e.get("p_holm"))] for e in t["per_finding"]]
        blocks.append(Table(headers=["finding", "n", "positives", "AUROC head", "AUROC fine-tune",
                                     "difference [95% CI]", "DeLong p", "Holm p"],
                            rows=rows, numeric=[False] + [True] * 7))
    return blocks


def macro_sentence(macro: dict | None) -> str:
    """The macro-AUROC difference with its bootstrap interval and p, naming what was resampled."""
    if not macro or not all_finite(macro.get("diff")):
        return "no finding has both classes on test, so no macro-AUROC difference."
    unit = (f"{macro['n_clusters']} patients resampled" if macro["method"] == "cluster-bootstrap"
            else "images resampled")
    return (f"macro AUROC difference (head - fine-tune) {fmt_ci(macro['diff'], macro['ci_diff'])} over "
            f"{macro['n_findings']} findings, paired bootstrap p {fmt_p(macro['p_value'])} ({macro['n_boot']} "
            f"resamples, {unit}).")


def contrast_phrase(test: dict) -> str:
    """What the verdict says of a head-vs-fine-tune pair: macro AUROC, then the findings where they differ."""
    macro = test.get("macro") or {}
    p = macro.get("p_value")
    differ = all_finite(p) and p < 0.05
    scored = [e for e in test["per_finding"] if e.get("p_holm") is not None]
    named = ", ".join(f"{d['finding']} ({'head' if d['better'] == 'a' else 'fine-tune'} higher)"
                      for d in test["differ"])
    per = (f"per finding (DeLong, Holm-corrected over {len(scored)} findings) they differ on {named}" if named
           else f"no finding differs after the Holm correction over {len(scored)} findings")
    return (f"{'differ' if differ else 'do not differ significantly'} in test macro AUROC (head - fine-tune "
            f"{fmt_ci(macro.get('diff'), macro.get('ci_diff'))}, paired bootstrap p {fmt_p(p)}); {per}")


def _label_blocks(stats: dict, names: list[str]) -> list[Block]:
    splits = [s for s in SPLITS if s in stats["splits"]]
    if not splits:
        return [Paragraph("The records hold no val or test labels to count.")]
    headers = ["finding"] + [f"{s} {k}" for s in splits for k in ("positives / scored", "prevalence", "masked")]
    rows = [[name] + [cell for s in splits for cell in (
        f"{stats['splits'][s][name]['n_pos']} / {stats['splits'][s][name]['n']}",
        fmt_value(stats["splits"][s][name]["prevalence"]), str(stats["splits"][s][name]["n_masked"]))]
        for name in names]
    blocks: list[Block] = [
        Paragraph(f"Counted on the {' and '.join(splits)} labels stored in {stats['source']} (records do not hold "
                  "the train labels). Masked labels (uncertain, or unknown under the blank rule) are never scored."),
        Table(headers=headers, rows=rows, numeric=[False] + [True] * (len(headers) - 1))]
    if stats["cooccurrence"] is not None:
        counts = stats["cooccurrence"]
        blocks += [Paragraph(f"Co-occurrence over the {' and '.join(splits)} images: images positive for both "
                             "findings (the diagonal: positives of each finding)."),
                   Table(headers=["finding"] + names, rows=[[name] + [str(c) for c in counts[i]]
                                                            for i, name in enumerate(names)],
                         numeric=[False] + [True] * len(names))]
    return blocks


def _finding_table(names: list[str], columns: list[Row], stats: dict) -> Table:
    test = stats["splits"].get("test") or {}
    rows = [[name, fmt_value((test.get(name) or {}).get("prevalence"))]
            + [finding_cell(finding_auroc(row, name)) for row in columns] for name in names]
    rows.append(["macro AUROC", MISSING] + [fmt_mean_std_ci(row.mean("test", "auroc"), _std(row),
                                                            _ci(row)) for row in columns])
    return Table(headers=["finding", "test prevalence"] + [_title(row) for row in columns], rows=rows,
                 numeric=[False] + [True] * (len(columns) + 1))


def _roc_grid(row: Row, names: list[str]) -> bytes | None:
    try:
        test = labelled_test(row.reference)
    except DataError as error:
        logger.warning("no per-finding ROC for %s: %s", row.reference.run_id, one_line(error))
        return None
    panels = []
    for j, name in enumerate(names[:test.y.shape[1]]):
        scored = test.mask[:, j]
        auroc = ((row.reference.metrics.get("test") or {}).get("per_label") or {}).get(name, {}).get("auroc")
        label = f"{name} ({fmt_value(auroc)})" if all_finite(auroc) else name
        panels.append((label, test.y[scored, j], test.proba[scored, j]))
    return plots.roc_grid_figure(panels, title=f"ROC per finding on test: {_title(row)}, run "
                                               f"{row.reference.run_id} (AUROC in brackets)")


def _title(row: Row) -> str:
    return f"{row.backbone} {row.label}"


def _std(row: Row) -> float:
    return aggregate_seeds([run.metrics.get("test", {}).get("auroc") for run in row.runs])[1]


def _ci(row: Row) -> list | None:
    ci = row.reference.metrics.get("test", {}).get("auroc_ci")
    return ci if isinstance(ci, (list, tuple)) else None
