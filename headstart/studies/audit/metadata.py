"""Metadata-only baseline: can image size, file size, mode or format alone predict the label?

If a logistic regression on these facts (no pixels) reaches a high test AUROC, any model can take the same
shortcut: e.g. one class was scanned on another machine, or re-saved at another size.
"""

from __future__ import annotations

import logging

import numpy as np

from headstart.evaluation.bootstrap import bootstrap_ci
from headstart.studies.audit.config import AuditConfig
from headstart.studies.audit.fit import auroc, predict_proba, select_logreg, why_not_fittable
from headstart.studies.audit.inputs import AuditInputs
from headstart.studies.audit.result import CheckResult, fmt_ci, skipped

log = logging.getLogger(__name__)

NAME = "metadata_baseline"
NUMERIC = ("width", "height", "file_size", "bit_depth")  # log-scaled where sizes (see metadata_matrix)
CATEGORICAL = ("mode", "format", "view_position", "manufacturer", "photometric")
MAX_LEVELS = 50  # one-hot levels kept per categorical field (the most frequent; the rest share "other")


def metadata_matrix(columns: dict[str, np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(len(rows), F) features and their names: log width, log height, log aspect ratio, log file size, bit depth,
    pixel spacing when every row has it, and one-hot categories. Columns constant over `rows` are dropped."""
    feats: list[np.ndarray] = []
    names: list[str] = []
    if "width" in columns and "height" in columns:
        w = np.maximum(columns["width"][rows].astype(np.float64), 1.0)
        h = np.maximum(columns["height"][rows].astype(np.float64), 1.0)
        feats += [np.log(w), np.log(h), np.log(w / h)]
        names += ["log_width", "log_height", "log_aspect_ratio"]
    if "file_size" in columns:
        feats.append(np.log1p(np.maximum(columns["file_size"][rows].astype(np.float64), 0.0)))
        names.append("log_file_size")
    if "bit_depth" in columns:
        feats.append(columns["bit_depth"][rows].astype(np.float64))
        names.append("bit_depth")
    for name in ("pixel_spacing_y", "pixel_spacing_x"):
        if name in columns and np.isfinite(columns[name][rows]).all():
            feats.append(columns[name][rows].astype(np.float64))
            names.append(name)
    for name in CATEGORICAL:
        if name not in columns:
            continue
        values = columns[name][rows].astype(str)
        levels, counts = np.unique(values, return_counts=True)
        for level in levels[np.argsort(-counts, kind="stable")][:MAX_LEVELS]:
            feats.append((values == level).astype(np.float64))
            names.append(f"{name}={level}")
    if not feats:
        return np.zeros((len(rows), 0)), []
    x = np.stack(feats, axis=1)
    varying = x.std(axis=0) > 0
    return x[:, varying], [n for n, keep in zip(names, varying) if keep]


def metadata_baseline(inputs: AuditInputs, config: AuditConfig) -> CheckResult:
    """Logistic regression on metadata alone, C selected on val, test AUROC with a 95% bootstrap interval.
    Flagged when the interval's lower end is above `config.flag_auroc_low`."""
    empty = {"auroc": None, "auroc_ci": None, "features": []}
    meta = inputs.meta
    if not meta.present:
        return skipped(NAME, "the cache has no /samples/meta (made before metadata was recorded); re-extract "
                             "with this headstart to record it", **empty)
    usable = [n for n in (*NUMERIC, *CATEGORICAL) if n in meta.columns]
    if "width" not in meta.columns or not usable:
        why = "; ".join(meta.problems) or "no usable metadata fields in /samples/meta"
        return skipped(NAME, f"metadata damaged or incomplete ({why})", **empty)
    recorded = meta.recorded_rows()
    why = why_not_fittable(inputs.splits[recorded], inputs.labels[recorded], inputs.classes)
    if why:
        return skipped(NAME, why, **empty)
    rows = {s: np.flatnonzero(recorded & (inputs.splits == s)) for s in ("train", "val", "test")}
    x_all, names = metadata_matrix(meta.columns, np.flatnonzero(recorded))
    if not names:
        return CheckResult(NAME, False, "every image has the same metadata: no shortcut possible through it",
                           {"auroc": 0.5, "auroc_ci": [0.5, 0.5], "features": [], "constant": True})
    position = np.full(inputs.n, -1)
    position[np.flatnonzero(recorded)] = np.arange(int(recorded.sum()))
    x = {s: x_all[position[r]] for s, r in rows.items()}
    y = {s: inputs.labels[r] for s, r in rows.items()}
    n_classes = len(inputs.classes)
    fitted = select_logreg(x["train"], y["train"], x["val"], y["val"], Cs=config.C_grid, n_classes=n_classes,
                           max_iter=config.max_iter)
    proba = predict_proba(fitted, x["test"], n_classes=n_classes)
    value = auroc(y["test"], proba)
    ci = bootstrap_ci(y["test"], proba, threshold=None, metrics=("auroc",), n_boot=config.n_boot,
                      seed=config.seed)["auroc"]
    flagged = bool(ci[0] > config.flag_auroc_low)
    if flagged:
        message = f"image metadata alone predicts the label (AUROC {fmt_ci(value, ci)}): a model can take a shortcut"
    else:
        message = f"metadata alone gives test AUROC {fmt_ci(value, ci)}: no strong metadata shortcut"
    if meta.problems:
        message += f" ({len(meta.problems)} damaged field(s) left out)"
    data = {"auroc": value, "auroc_ci": ci, "features": names, "C": fitted.C, "selection": fitted.selection,
            "n_test": int(len(y["test"])), "n_without_metadata": int((~recorded).sum()), "problems": meta.problems}
    return CheckResult(NAME, flagged, message, data)
