"""One metric suite for every strategy, so cached heads and fine-tunes are scored by the same code.

The rank, precision-recall and confusion kernels work on a batch of score rows that share one label vector.
`compute_metrics` calls them with a batch of one; `bootstrap` calls them with every resample at once. They are
hand-written rather than sklearn's because sklearn scores one resample per call, which measured far slower for
the 1,000 resamples behind every interval (README, Benchmarks). The tests check each kernel against sklearn.
"""

from __future__ import annotations

import logging

import numpy as np

from headstart.errors import DataError

logger = logging.getLogger(__name__)

ECE_BINS = 15  # equal-width confidence bins for the expected calibration error
DEFAULT_THRESHOLD = 0.5  # binary decision threshold when none was chosen on validation


def as_proba(proba: np.ndarray, *, n: int) -> np.ndarray:
    """Return `proba` as a float (n, C) array; a 1-D array is read as the positive-class probability."""
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)
    if p.ndim != 2 or p.shape[0] != n or p.shape[1] < 2:
        raise DataError(
            f"probabilities have shape {p.shape}; expected ({n}, n_classes >= 2) to match {n} labels; "
            "pass predict_proba output"
        )
    if not np.all(np.isfinite(p)):
        raise DataError("probabilities contain NaN or infinity; expected finite values; check the model output")
    return p


def as_labels(y_true: np.ndarray, *, n_classes: int | None = None) -> np.ndarray:
    """Return integer class indices, refusing labels outside [0, n_classes)."""
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise DataError(f"labels have shape {y.shape}; expected a 1-D array of class indices")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.mod(y, 1) == 0):
            raise DataError("labels are not whole numbers; expected class indices 0..C-1")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or (n_classes is not None and y.max() >= n_classes)):
        raise DataError(
            f"labels span {y.min()}..{y.max()}; expected class indices 0..{(n_classes or 1) - 1}; "
            "check that the probabilities have one column per class"
        )
    return y


# --- batch kernels: `scores` is (B, n), `positive` is a shared (n,) boolean vector -------------------------------


def batch_auroc_auprc(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and average precision of every row from one descending sort (the cost that matters).

    Ties are handled by tie groups in the sorted order. AUROC: each sample gets the average rank of its group
    (the 1/2 credit of the U statistic). Average precision: each positive is credited with the precision at
    the end of its group, which is exactly sklearn's sum over thresholds of (R_k - R_{k-1}) * P_k.
    """
    positive = np.asarray(positive, dtype=bool)
    n = positive.size
    n_pos = int(positive.sum())
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        nan = np.full(scores.shape[0], np.nan)
        return nan, nan.copy()
    # order inside a tie group is irrelevant; 16-bit ranks (`dense_ranks`) take numpy's radix sort, floats quicksort
    order = np.argsort(-scores, axis=1, kind="stable" if scores.dtype == np.int16 else None)
    s_sorted = np.take_along_axis(scores, order, axis=1)
    y_sorted = positive[order]
    position = np.arange(n)
    boundary = s_sorted[:, :-1] != s_sorted[:, 1:]  # a new tie group starts after position i
    is_last = np.ones(y_sorted.shape, dtype=bool)
    is_last[:, :-1] = boundary
    is_first = np.ones(y_sorted.shape, dtype=bool)
    is_first[:, 1:] = boundary
    group_start = np.maximum.accumulate(np.where(is_first, position, 0), axis=1)
    group_end = np.minimum.accumulate(np.where(is_last, position, n)[:, ::-1], axis=1)[:, ::-1]

    ascending_rank = n - (group_start + group_end) / 2.0  # 1-based average rank in ascending order
    rank_sum = (ascending_rank * y_sorted).sum(axis=1)
    auroc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)

    precision = np.cumsum(y_sorted, axis=1) / (position + 1)
    precision_at_end = np.take_along_axis(precision, group_end, axis=1)
    auprc = (precision_at_end * y_sorted).sum(axis=1) / n_pos
    return auroc, auprc


def dense_ranks(proba: np.ndarray) -> np.ndarray:
    """Each column of (n, C) `proba` replaced by its dense rank (equal scores share one), as int16 when n allows.

    AUROC and average precision depend only on the order of the scores and their ties, so the batch kernels
    give the same values on ranks; a bootstrap sorts 1,000 resamples, and 16-bit integers sort by radix, several
    times faster than floats.
    """
    if len(proba) >= np.iinfo(np.int16).max:
        return proba
    return np.stack([np.unique(col, return_inverse=True)[1] for col in proba.T], axis=1).astype(np.int16)


def batch_confusion(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(B, C, C) confusion matrices, rows = true class, for (B, n) predictions against shared labels `y`."""
    n_rows = pred.shape[0]
    flat = y[None, :] * n_classes + pred + (np.arange(n_rows) * n_classes * n_classes)[:, None]
    counts = np.bincount(flat.ravel(), minlength=n_rows * n_classes * n_classes)
    return counts.reshape(n_rows, n_classes, n_classes)


def rates_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy, sensitivity, specificity and F1 per batch row of (B, C, C) matrices.

    Binary: sensitivity and F1 are for class 1, specificity is the recall of class 0.
    Multi-class: one-vs-rest per class (`*_per_class`, shape (B, C)), then the macro mean over defined classes.
    """
    cm = cm.astype(np.float64)
    n_classes = cm.shape[-1]
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support = cm.sum(axis=2)  # true count per class
    predicted = cm.sum(axis=1)
    total = cm.sum(axis=(1, 2))
    fn = support - tp
    fp = predicted - tp
    tn = total[:, None] - tp - fn - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tp / support
        specificity = tn / (tn + fp)
        f1_denominator = 2 * tp + fp + fn
        f1 = np.where(f1_denominator > 0, 2 * tp / np.maximum(f1_denominator, 1), np.nan)
        out = {"accuracy": tp.sum(axis=1) / total}
    out["balanced_accuracy"] = _nanmean_rows(recall)
    if n_classes == 2:
        out["sensitivity"] = recall[:, 1]
        out["specificity"] = recall[:, 0]
        out["f1"] = np.nan_to_num(f1[:, 1], nan=0.0)  # sklearn's zero_division=0
    else:
        out["sensitivity"] = _nanmean_rows(recall)
        out["specificity"] = _nanmean_rows(specificity)
        out["f1"] = _nanmean_rows(f1)  # classes absent from truth and predictions are left out, as in sklearn
        out["sensitivity_per_class"] = recall
        out["specificity_per_class"] = specificity
    return out


def batch_ranking(y: np.ndarray, proba_rows: np.ndarray) -> dict[str, np.ndarray]:
    """AUROC and AUPRC per batch row of (B, n, C) probabilities; multi-class is the one-vs-rest macro mean."""
    n_classes = proba_rows.shape[-1]
    if n_classes == 2:
        auroc, auprc = batch_auroc_auprc(y == 1, proba_rows[:, :, 1])
        return {"auroc": auroc, "auprc": auprc}
    per_class = [batch_auroc_auprc(y == k, proba_rows[:, :, k]) for k in range(n_classes)]
    auroc = np.stack([pair[0] for pair in per_class], axis=1)
    auprc = np.stack([pair[1] for pair in per_class], axis=1)
    return {"auroc": _nanmean_rows(auroc), "auprc": _nanmean_rows(auprc), "auroc_per_class": auroc}


def predict(proba: np.ndarray, threshold: float | None) -> np.ndarray:
    """Class predictions along the last axis: binary uses p1 >= threshold, multi-class the argmax."""
    if proba.shape[-1] == 2:
        return (proba[..., 1] >= (DEFAULT_THRESHOLD if threshold is None else threshold)).astype(np.int64)
    return np.argmax(proba, axis=-1)


def sample_log_loss(y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Per-sample cross-entropy, probabilities clipped to [eps, 1] as sklearn does."""
    p_true = np.take_along_axis(proba, y[:, None], axis=1)[:, 0]
    return -np.log(np.clip(p_true, np.finfo(np.float64).eps, 1.0))


def sample_brier(y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Per-sample Brier loss: (p1 - y)^2 for binary, sum over classes of (p_k - [y == k])^2 for multi-class."""
    if proba.shape[1] == 2:
        return (proba[:, 1] - (y == 1)) ** 2
    onehot = np.eye(proba.shape[1])[y]
    return ((proba - onehot) ** 2).sum(axis=1)


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, *, n_bins: int = ECE_BINS) -> float:
    """ECE over equal-width bins: sum over bins of (bin share) * |observed - mean confidence|.

    Binary: calibration of p1 (observed = fraction of positives in the bin), which also covers the
    low-probability range that max-prob confidence (always >= 0.5) would fold away.
    Multi-class: max-prob confidence against top-1 correctness. Bin b holds confidences in (b/B, (b+1)/B];
    a confidence of exactly 0 falls in the first bin.
    """
    if proba.shape[1] == 2:
        confidence, observed = proba[:, 1], (y == 1).astype(np.float64)
    else:
        confidence = proba.max(axis=1)
        observed = (np.argmax(proba, axis=1) == y).astype(np.float64)
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    gap = np.bincount(bins, weights=observed, minlength=n_bins) - np.bincount(
        bins, weights=confidence, minlength=n_bins
    )
    return float(np.abs(gap).sum() / max(len(y), 1))


def compute_metrics(
    y_true: np.ndarray, proba: np.ndarray, *, threshold: float | None = None
) -> dict[str, float | list]:
    """Score (n, C) class probabilities against labels; NaN (with one warning) where a metric is undefined.

    Binary: class 1 is positive and predictions are `proba[:, 1] >= threshold` (default 0.5).
    Multi-class: argmax predictions, one-vs-rest macro AUROC/AUPRC, macro F1/sensitivity/specificity plus
    per-class lists; `threshold` is ignored and recorded as NaN.
    """
    y = as_labels(y_true)
    p = as_proba(proba, n=len(y))
    n_classes = p.shape[1]
    y = as_labels(y, n_classes=n_classes)
    if len(y) == 0:
        raise DataError("no samples to evaluate; expected a non-empty split; check the split sizes")
    binary = n_classes == 2
    if binary:
        threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    present = np.unique(y)
    if len(present) < 2:
        logger.warning(
            "only class %s is present among %d samples; AUROC and AUPRC are undefined (NaN)", present[0], len(y)
        )
    elif len(present) < n_classes:
        logger.warning(
            "classes %s are absent among %d samples; macro AUROC/AUPRC average the %d present classes",
            sorted(set(range(n_classes)) - set(present.tolist())), len(y), len(present),
        )
    cm = batch_confusion(y, predict(p, threshold)[None, :], n_classes)
    rates = rates_from_confusion(cm)
    ranking = batch_ranking(y, p[None, :, :])
    out: dict[str, float | list] = {
        "n": int(len(y)),
        "threshold": float(threshold) if binary else float("nan"),
        "accuracy": float(rates["accuracy"][0]),
        "balanced_accuracy": float(rates["balanced_accuracy"][0]),
        "auroc": float(ranking["auroc"][0]),
        "auprc": float(ranking["auprc"][0]),
        "sensitivity": float(rates["sensitivity"][0]),
        "specificity": float(rates["specificity"][0]),
        "f1": float(rates["f1"][0]),
        "log_loss": float(sample_log_loss(y, p).mean()),
        "brier": float(sample_brier(y, p).mean()),
        "ece": expected_calibration_error(y, p),
        "confusion_matrix": cm[0].tolist(),
    }
    if not binary:
        out["sensitivity_per_class"] = rates["sensitivity_per_class"][0].tolist()
        out["specificity_per_class"] = rates["specificity_per_class"][0].tolist()
        out["auroc_per_class"] = ranking["auroc_per_class"][0].tolist()
    return out


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    """Row mean ignoring NaN, NaN (without a RuntimeWarning) where a whole row is NaN."""
    finite = ~np.isnan(values)
    count = finite.sum(axis=1)
    total = np.where(finite, values, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)
