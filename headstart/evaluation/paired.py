"""Paired tests between two strategies scored on the same test images.

DeLong compares AUROCs (threshold-free); McNemar compares accuracies at the frozen thresholds. Both use the
pairing: the two models err on many of the same images, so unpaired intervals would overstate uncertainty.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import stats
from scipy.stats import rankdata

from headstart.errors import DataError

logger = logging.getLogger(__name__)

MCNEMAR_EXACT_BELOW = 25  # discordant pairs below which the exact binomial test replaces the chi-square


def delong_test(y_true: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, *, ci: float = 0.95) -> dict:
    """DeLong test of AUROC(a) == AUROC(b) for paired binary scores (fast midrank algorithm, Sun & Xu 2014).

    Returns `auroc_a`, `auroc_b`, `diff` (a - b), `z`, two-sided `p_value` and `ci_diff` (normal interval of
    the difference). Identical scores give diff 0 and p 1; a split with one class gives NaN with a warning.
    """
    y = np.asarray(y_true).astype(np.int64)
    scores = np.vstack([np.asarray(p_a, dtype=np.float64), np.asarray(p_b, dtype=np.float64)])
    if y.ndim != 1 or scores.shape[1] != y.size:
        raise DataError(
            f"DeLong inputs have {y.size} labels and scores of shape {scores.shape}; expected equal lengths"
        )
    if np.setdiff1d(y, [0, 1]).size:
        raise DataError(
            f"DeLong needs binary labels 0/1; found classes {np.unique(y).tolist()}; pass y == k for one class"
        )
    positive = y == 1
    m, n = int(positive.sum()), int((~positive).sum())
    if m == 0 or n == 0:
        logger.warning("DeLong test needs both classes; found only %s among %d samples (NaN)", int(y[0]), y.size)
        nan = float("nan")
        return {"auroc_a": nan, "auroc_b": nan, "diff": nan, "z": nan, "p_value": nan, "ci_diff": [nan, nan]}

    pos, neg = scores[:, positive], scores[:, ~positive]
    rank_pos = rankdata(pos, axis=1)  # midranks within the positives
    rank_neg = rankdata(neg, axis=1)
    rank_all = rankdata(np.hstack([pos, neg]), axis=1)
    auroc = (rank_all[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / n
    v10 = (rank_all[:, :m] - rank_pos) / n  # structural components of the positives
    v01 = 1.0 - (rank_all[:, m:] - rank_neg) / m  # ... and of the negatives
    covariance = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    variance = float(covariance[0, 0] + covariance[1, 1] - 2.0 * covariance[0, 1])

    diff = float(auroc[0] - auroc[1])
    if variance <= 1e-15:  # identical (or rank-identical) scores: no evidence of a difference
        z, p_value, half_width = 0.0, 1.0, 0.0
    else:
        se = np.sqrt(variance)
        z = diff / se
        p_value = float(2.0 * stats.norm.sf(abs(z)))
        half_width = float(stats.norm.ppf(0.5 + ci / 2.0) * se)
    return {
        "auroc_a": float(auroc[0]),
        "auroc_b": float(auroc[1]),
        "diff": diff,
        "z": float(z),
        "p_value": p_value,
        "ci_diff": [diff - half_width, diff + half_width],
    }


def mcnemar_test(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> dict:
    """McNemar test of equal accuracy for paired predictions.

    `b` counts images only a gets right, `c` images only b gets right. With b + c < 25 the p-value is the
    exact two-sided binomial (statistic = min(b, c)); otherwise chi-square with continuity correction,
    (|b - c| - 1)^2 / (b + c), on one degree of freedom.
    """
    y = np.asarray(y_true)
    a_right = np.asarray(pred_a) == y
    b_right = np.asarray(pred_b) == y
    if a_right.shape != y.shape or b_right.shape != y.shape:
        raise DataError(f"McNemar inputs have shapes {y.shape}, {np.shape(pred_a)}, {np.shape(pred_b)}; expected equal")
    b = int(np.sum(a_right & ~b_right))
    c = int(np.sum(~a_right & b_right))
    if b + c < MCNEMAR_EXACT_BELOW:
        statistic = float(min(b, c))
        p_value = 1.0 if b + c == 0 else float(min(1.0, 2.0 * stats.binom.cdf(min(b, c), b + c, 0.5)))
        exact = True
    else:
        statistic = float((abs(b - c) - 1) ** 2 / (b + c))
        p_value = float(stats.chi2.sf(statistic, df=1))
        exact = False
    return {"b": b, "c": c, "statistic": statistic, "p_value": p_value, "exact": exact}
