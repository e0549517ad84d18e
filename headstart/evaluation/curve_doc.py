"""curve.json as a document: its name and format, reading every curve under RUNS, and the console view.

Light on purpose (no numpy, no torch): `compare` reads curves through here without importing the study itself.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from headstart.errors import one_line
from headstart.evaluation.table import fmt_mean_std, fmt_mean_std_ci, format_table

log = logging.getLogger(__name__)

CURVE_NAME = "curve.json"  # RUNS/curve_<set>_<head>/curve.json
CURVE_FORMAT = "headstart-curve"
CURVE_FORMAT_VERSION = 1  # bump when a field changes meaning; readers skip newer versions

COLUMNS = [("size", "size"), ("repeats", "draws"), ("n_train", "n train"), ("n_patients", "patients"),
           ("test", "test {metric} mean ± sd [95% CI]"), ("val", "val {metric}")]


def curve_table(document: dict) -> str:
    """`headstart curve`'s printout of one curve.json document."""
    metric = document["metric"]
    rows = []
    for entry in document["summary"]:
        test, val = entry["test"][metric], entry["val"][metric]
        low, high = entry["n_train_range"]
        rows.append({"size": entry["size"], "repeats": entry["repeats"],
                     "n_train": str(low) if low == high else f"{low}-{high}",
                     "n_patients": f"{entry['n_patients']:.0f}",
                     "test": fmt_mean_std_ci(test["mean"], test["sd"], test["ci"]),
                     "val": fmt_mean_std(val["mean"], val["sd"])})
    columns = [(key, header.format(metric=metric)) for key, header in COLUMNS]
    title = f"{document['feature_set']} / {document['head']}: {metric} against labelled training images"
    return "\n".join([title, format_table(rows, columns), fit_sentence(document)])


def fit_sentence(document: dict) -> str:
    """The fit in words: plateau, labels to 95% and 99% of it (and to --target), or why there is no fit."""
    fit = document.get("fit")
    if not fit:
        return f"no power-law fit: {document.get('fit_reason') or 'not computed'}"
    parts = [f"fit {document['metric']} = {fit['a']:.3f} - {fit['b']:.3g} * n^-{fit['c']:.3f}: plateau {fit['a']:.3f}"]
    for q in (95, 99):
        parts.append(f"{q}% of it at {labels_text(fit.get(f'labels_{q}'), fit)}")
    if fit.get("target") is not None:
        parts.append(f"{document['metric']} {fit['target']:g} at {labels_text(fit.get('labels_target'), fit)}")
    return "; ".join(parts)


def labels_text(labels: float | None, fit: dict) -> str:
    """"~120 labels", with "(extrapolated)" beyond the largest measured size, or "never" when unreachable."""
    if labels is None:
        return "never (above the plateau)"
    extrapolated = " (extrapolated beyond the measured sizes)" if labels > fit["n_max"] * 1.0001 else ""
    return f"~{labels:,.0f} labels{extrapolated}"


def read_curves(runs_dir: str | os.PathLike) -> list[dict]:
    """Every readable RUNS/*/curve.json (sorted by path), each with `path` added (and "(views)" after the head of a
    views twin); others skipped with a warning."""
    curves = []
    for path in sorted(Path(runs_dir).glob(f"*/{CURVE_NAME}")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(document, dict) or document.get("format") != CURVE_FORMAT:
                raise ValueError(f"not a {CURVE_FORMAT} document")
            if int(document.get("format_version", 1)) > CURVE_FORMAT_VERSION:
                raise ValueError(f"format_version {document['format_version']} is newer than {CURVE_FORMAT_VERSION}")
            for key in ("summary", "points", "dataset", "metric", "feature_set", "backbone", "head"):
                if key not in document:
                    raise ValueError(f"it lacks `{key}`")
        except (OSError, ValueError, TypeError) as error:
            log.warning("skipping unreadable curve %s: %s", path, one_line(error))
            continue
        if document.get("views") == "on":  # `curve --views on`'s twin: every label of the report tells it apart
            document["head"] = f"{document['head']} (views)"
        curves.append({**document, "path": str(path)})
    return curves
