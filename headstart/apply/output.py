"""The prediction table and the metrics file, decided as plain data and written atomically.

Columns, in order (the contract): `id`, `proba_<class>` for each class, `prediction` (the class at the run's
frozen threshold; argmax for multi-class), `label` when DATA has labels, and `reason` with `--on-bad-image
skip` (why a row has no probabilities; empty otherwise). A skipped image is a row, never a gap.

A multi-label run writes `id`, one `proba_<finding>` per finding in the run's order, one `<finding>` per finding
(1 when the probability reaches the finding's frozen threshold, else 0; 0.5 where val had one class; empty for a
finding left out of training), then `label_<finding>` (1 / 0, empty when not scored) when DATA has labels, and
`reason`. There is no `prediction` column; a finding whose name would collide with another column is refused.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from headstart.errors import DataError
from headstart.evaluation.records import jsonable
from headstart.io import write_bytes_atomic
from headstart.tasks.factory import task_for_classes


def columns(classes: list[str], *, labelled: bool, reasons: bool, multilabel: bool = False) -> list[str]:
    if multilabel:
        header = ["id", *(f"proba_{f}" for f in classes), *classes, *(f"label_{f}" for f in classes if labelled),
                  *(["reason"] if reasons else [])]
        clash = sorted({c for c in header if header.count(c) > 1})
        if clash:
            raise DataError(f"finding name(s) {', '.join(clash)} would repeat a column of the prediction table "
                            f"({', '.join(header)}); rename the finding in the labels and extract again")
        return header
    return ["id", *(f"proba_{c}" for c in classes), "prediction", *(["label"] if labelled else []),
            *(["reason"] if reasons else [])]


def multilabel_table(ids: list[str], proba: np.ndarray, *, findings: list[str], thresholds: list[float | None],
                     labels: np.ndarray | None, known: np.ndarray | None, errors: list[str] | None) -> list[dict]:
    """One dict per row of a multi-label run: NaN probabilities (a skipped row, an untrained finding) give None
    cells; a finding without a frozen threshold (one class in val) is cut at 0.5, as the task predicts."""
    proba = np.asarray(proba, dtype=np.float64)
    cuts = np.array([0.5 if t is None else t for t in thresholds], dtype=np.float64)
    decided = np.isfinite(proba)
    rows = []
    for i, sample_id in enumerate(ids):
        row: dict = {"id": sample_id}
        for j, f in enumerate(findings):
            row[f"proba_{f}"] = float(proba[i, j]) if np.isfinite(proba[i, j]) else None
            row[f] = int(proba[i, j] >= cuts[j]) if decided[i, j] else None
        if labels is not None:
            row.update({f"label_{f}": int(labels[i, j]) if known is None or known[i, j] else None
                        for j, f in enumerate(findings)})
        if errors is not None:
            row["reason"] = errors[i] or None
        rows.append(row)
    return rows


def table(ids: list[str], proba: np.ndarray, *, classes: list[str], threshold: float | None,
          labels: np.ndarray | None, errors: list[str] | None) -> list[dict]:
    """One dict per row; probabilities are None for a skipped row (its `reason` says why)."""
    ok = np.isfinite(proba).all(axis=1)
    decided = np.full(len(ids), -1, dtype=np.int64)
    decided[ok] = task_for_classes(classes).predict(proba[ok], threshold)
    rows = []
    for i, sample_id in enumerate(ids):
        row: dict = {"id": sample_id}
        row.update({f"proba_{c}": float(proba[i, k]) if ok[i] else None for k, c in enumerate(classes)})
        row["prediction"] = classes[decided[i]] if ok[i] else None
        if labels is not None:
            row["label"] = classes[labels[i]] if labels[i] >= 0 else None
        if errors is not None:
            row["reason"] = errors[i] or None
        rows.append(row)
    return rows


def render(rows: list[dict], header: list[str], fmt: str) -> bytes:
    """CSV (None as an empty cell, probabilities to float32 precision) or JSON lines (None as null)."""
    if fmt == "jsonl":
        return "".join(json.dumps({k: row.get(k) for k in header}, allow_nan=False) + "\n" for row in rows).encode()
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if row.get(k) is None else f"{row[k]:.9g}" if isinstance(row[k], float) else row[k]
                         for k in header])
    return buf.getvalue().encode("utf-8")


def write_table(path: str | Path, rows: list[dict], header: list[str], fmt: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, render(rows, header, fmt))
    return path


def metrics_path(output: str | Path) -> Path:
    """`preds.csv` -> `preds.metrics.json`, next to it."""
    output = Path(output)
    return output.with_name(f"{output.stem}.metrics.json")


def write_metrics(output: str | Path, summary: dict) -> Path:
    path = metrics_path(output)
    write_bytes_atomic(path, (json.dumps(jsonable(summary), indent=2, sort_keys=True, allow_nan=False) + "\n").encode())
    return path
