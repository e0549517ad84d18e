"""The multi-class part of a data set's section: per-class test AUROC of the best runs and their K x K confusion.

Both come from what a multi-class record already holds: `metrics.test.auroc_per_class` (one-vs-rest, NaN for a
class absent from test) and `metrics.test.confusion_matrix` (counts; rows = true class, columns = predicted,
the argmax).
"""

from __future__ import annotations

import numpy as np

from headstart.evaluation.report.document import Block, Heading, Paragraph, Table
from headstart.evaluation.report.multilabel import best_columns
from headstart.evaluation.report.summary import Row
from headstart.evaluation.table import aggregate_seeds, fmt_mean_std, fmt_value


def is_multiclass(rows: list[Row], classes: list[str]) -> bool:
    """More than two classes and at least one record with per-class AUROC."""
    return len(classes) > 2 or any(
        len(run.metrics.get("test", {}).get("auroc_per_class") or []) > 2 for row in rows for run in row.runs)


def per_class(row: Row, k: int, key: str) -> tuple[float, float]:
    """Seed mean and std of entry k of a per-class list (`auroc_per_class`, `sensitivity_per_class`, ...)."""
    values = []
    for run in row.runs:
        listed = run.metrics.get("test", {}).get(key)
        values.append(listed[k] if isinstance(listed, list) and k < len(listed) else None)
    return aggregate_seeds(values)


def multiclass_section(rows: list[Row], classes: list[str], *, select_metric: str) -> tuple[list[Block], dict]:
    """Per-class AUROC table (classes as rows, best runs as columns) and one confusion table per best run."""
    columns = best_columns(rows, select_metric=select_metric)
    n_classes = max([len(classes)] + [len(run.metrics.get("test", {}).get("auroc_per_class") or [])
                                      for row in columns for run in row.runs])
    names = [classes[k] if k < len(classes) else str(k) for k in range(n_classes)]
    titles = [f"{row.backbone} {row.label}" for row in columns]
    table_rows, data_rows = [], {}
    for k, name in enumerate(names):
        cells = [per_class(row, k, "auroc_per_class") for row in columns]
        sens = [per_class(row, k, "sensitivity_per_class") for row in columns]
        table_rows.append([name] + [f"{fmt_mean_std(*auc)} (sens. {fmt_value(s[0])})" for auc, s in zip(cells, sens)])
        data_rows[name] = {title: {"auroc": auc[0], "auroc_std": auc[1], "sensitivity": s[0]}
                           for title, auc, s in zip(titles, cells, sens)}
    blocks: list[Block] = [
        Heading(3, "Per-class test AUROC"),
        Paragraph(f"Classes as rows, the best runs as columns (per backbone: its best cached head and its best "
                  f"fine-tune by val {select_metric}). Cells: one-vs-rest AUROC, mean ± std over seeds, and in "
                  "brackets the class's sensitivity (recall) at the argmax decision; - where test lacks the class."),
        Table(headers=["class"] + titles, rows=table_rows, numeric=[False] + [True] * len(titles)),
        Heading(3, f"Confusion on test ({n_classes} x {n_classes} counts; rows = true class, columns = predicted)"),
    ]
    confusions = {}
    for title, row in zip(titles, columns):
        cm = row.reference.metrics.get("test", {}).get("confusion_matrix")
        cm = np.asarray(cm) if cm is not None else None
        if cm is None or cm.ndim != 2 or cm.shape != (n_classes, n_classes):
            blocks.append(Paragraph(f"{title}: no {n_classes} x {n_classes} confusion matrix in its record."))
            continue
        confusions[title] = {"run_id": row.reference.run_id, "counts": cm.astype(int).tolist()}
        blocks += [Paragraph(f"{title} (run {row.reference.run_id}):"),
                   Table(headers=["true class"] + names,
                         rows=[[name] + [str(int(c)) for c in cm[i]] for i, name in enumerate(names)],
                         numeric=[False] + [True] * n_classes)]
    return blocks, {"task": "multiclass", "classes": names, "per_class": data_rows, "confusion": confusions}
