"""Paired tests between two strategies scored on the same test images.

DeLong compares AUROCs (threshold-free); McNemar compares accuracies at the frozen thresholds. Both use the
pairing: the two models err on many of the same images, so unpaired intervals would overstate uncertainty.
Where patients hold several images (`groups`), DeLong's variance is Obuchowski's (1997) clustered estimator:
the structural components are summed per patient, so correlated images of one patient count once, not twice.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from scipy import sparse, stats
from scipy.stats import rankdata

from headstart.errors import DataError
from headstart.evaluation.clusters import cluster_index, n_clusters

logger = logging.getLogger(__name__)

MCNEMAR_EXACT_BELOW = 25  # discordant pairs below which the exact binomial test replaces the chi-square


def delong_test(y_true: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, *, ci: float = 0.95, groups=None) -> dict:
    """DeLong test of AUROC(a) == AUROC(b) for paired binary scores (fast midrank algorithm, Sun & Xu 2014).

    Returns `auroc_a`, `auroc_b`, `diff` (a - b), `z`, two-sided `p_value`, `ci_diff` (normal interval of the
    difference), `method` (`delong`, or `clustered-delong` when `groups` put two images under one patient) and
    `n_clusters`. Identical scores give diff 0 and p 1; a split with one class gives NaN with a warning.
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
        return {"auroc_a": nan, "auroc_b": nan, "diff": nan, "z": nan, "p_value": nan, "ci_diff": [nan, nan],
                "method": "delong", "n_clusters": int(y.size)}

    pos, neg = scores[:, positive], scores[:, ~positive]
    rank_pos = rankdata(pos, axis=1)  # midranks within the positives
    rank_neg = rankdata(neg, axis=1)
    rank_all = rankdata(np.hstack([pos, neg]), axis=1)
    auroc = (rank_all[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / n
    v10 = (rank_all[:, :m] - rank_pos) / n  # structural components of the positives
    v01 = 1.0 - (rank_all[:, m:] - rank_neg) / m  # ... and of the negatives
    cluster = cluster_index(groups, y.size)
    if cluster is None:
        covariance = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    else:
        covariance = _clustered_covariance(v10, v01, cluster[positive], cluster[~positive], auroc)
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
        "method": "delong" if cluster is None else "clustered-delong",
        "n_clusters": n_clusters(cluster, y.size),
    }


def _clustered_covariance(v10: np.ndarray, v01: np.ndarray, c_pos: np.ndarray, c_neg: np.ndarray,
                          auroc: np.ndarray) -> np.ndarray:
    """Obuchowski (1997): the (2, 2) covariance of two AUROCs from per-patient sums of the structural components
    (`v10` of the positives, `v01` of the negatives, clusters `c_pos` / `c_neg`), K/(K-1) small-sample factor."""
    k = int(max(c_pos.max(initial=-1), c_neg.max(initial=-1))) + 1
    m, n = c_pos.size, c_neg.size
    sums_pos = np.stack([np.bincount(c_pos, weights=row, minlength=k) for row in v10])  # (2, K)
    sums_neg = np.stack([np.bincount(c_neg, weights=row, minlength=k) for row in v01])
    d_pos = sums_pos - np.bincount(c_pos, minlength=k) * auroc[:, None]
    d_neg = sums_neg - np.bincount(c_neg, minlength=k) * auroc[:, None]
    factor = k / (k - 1)
    s10 = factor / m * d_pos @ d_pos.T
    s01 = factor / n * d_neg @ d_neg.T
    s11 = factor * d_pos @ d_neg.T
    return s10 / m + s01 / n + (s11 + s11.T) / (m * n)


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


def holm_adjust(p_values) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN entries stay NaN and do not count in the family).

    The k-th smallest of m p-values is multiplied by m - k + 1, then a running maximum keeps the adjusted values
    in the order of the raw ones; each adjusted value is >= its raw value and <= 1.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = order.size
    out[order] = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    return out


def paired_bootstrap_macro(y: np.ndarray, mask: np.ndarray | None, p_a: np.ndarray, p_b: np.ndarray, *,
                           groups=None, n_boot: int = 1000, seed: int = 0, ci: float = 0.95) -> dict:
    """Paired bootstrap of the macro-AUROC difference (a - b) of two multi-label runs on the same images.

    `y`, `mask` (True = the label is scored), `p_a` and `p_b` are (n, L). The macro mean covers the findings with
    both classes among their scored rows; a resample in which a finding has one class leaves it out of that
    resample's mean. With `groups` (patient per image, "" unknown) whole patients are resampled, so the images of
    one patient enter a resample together; both runs always see the same resample. The p-value is the two-sided
    bootstrap p, 2 x the smaller share of resampled differences on either side of 0 (at least 1 / n_boot).
    """
    y, p_a, p_b = np.asarray(y), np.asarray(p_a, dtype=np.float64), np.asarray(p_b, dtype=np.float64)
    known = np.ones(y.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if y.ndim != 2 or not y.shape == known.shape == p_a.shape == p_b.shape:
        raise DataError(f"paired bootstrap inputs have shapes {y.shape}, {known.shape}, {p_a.shape}, {p_b.shape}; "
                        "expected four equal (n, L) arrays")
    known &= np.isin(y, (0, 1))
    positive = (y == 1) & known
    scored = [j for j in range(y.shape[1]) if positive[:, j].any() and (known[:, j] & ~positive[:, j]).any()]
    try:
        cluster = cluster_index(groups, y.shape[0])  # None: every image is its own patient
    except ValueError as error:
        raise DataError(f"{error}; pass one patient per test image, or no groups") from None
    k = n_clusters(cluster, y.shape[0])
    nan = float("nan")
    out = {"diff": nan, "ci_diff": [nan, nan], "p_value": nan, "n_boot": int(n_boot), "n_findings": len(scored),
           "method": "bootstrap" if cluster is None else "cluster-bootstrap", "n_clusters": k}
    cluster = np.arange(y.shape[0]) if cluster is None else cluster
    if not scored:
        return out
    # per finding and run: (clusters x tie groups) counts of positive and negative images, built once
    tables = [[_group_table(positive[known[:, j], j], p[known[:, j], j], cluster[known[:, j]], k)
               for p in (p_a, p_b)] for j in scored]
    out["diff"] = float(np.mean(_macro_diffs(tables, np.ones((1, k)))))
    values = _cluster_draws(lambda counts: _macro_diffs(tables, counts), k, n=y.shape[0], n_boot=n_boot, seed=seed)
    values = values[np.isfinite(values)]
    if values.size:
        tail = (1.0 - ci) / 2.0 * 100.0
        out["ci_diff"] = [float(v) for v in np.percentile(values, [tail, 100.0 - tail])]
        share = min(float(np.mean(values <= 0.0)), float(np.mean(values >= 0.0)))
        out["p_value"] = float(min(1.0, max(2.0 * share, 1.0 / values.size)))
    return out


def finding_auroc_draws(y: np.ndarray, mask: np.ndarray, proba: np.ndarray, *, groups=None, n_boot: int = 1000,
                        seed: int = 0) -> np.ndarray:
    """(n_boot, L) AUROC of each finding of one multi-label run in each bootstrap resample, from one set of
    draws: whole patients are resampled where `groups` names them (images otherwise), the same resample for
    every finding, so per-finding and macro intervals come from one pass (the per-finding tie tables of
    `paired_bootstrap_macro`). NaN where a resample (or the split) has one class for a finding, or the finding
    has no finite probabilities (not trained). Unlike the single-label bootstrap, resamples are not stratified
    by class: one resample serves every finding, and each finding has its own classes."""
    y, proba = np.asarray(y), np.asarray(proba, dtype=np.float64)
    known = np.asarray(mask, dtype=bool) & np.isin(y, (0, 1)) & np.isfinite(proba)
    positive = (y == 1) & known
    scored = [j for j in range(y.shape[1]) if positive[:, j].any() and (known[:, j] & ~positive[:, j]).any()]
    cluster = cluster_index(groups, y.shape[0])
    k = n_clusters(cluster, y.shape[0])
    cluster = np.arange(y.shape[0]) if cluster is None else cluster
    draws = np.full((n_boot, y.shape[1]), np.nan)
    if scored:
        tables = [_group_table(positive[known[:, j], j], proba[known[:, j], j], cluster[known[:, j]], k)
                  for j in scored]
        draws[:, scored] = _cluster_draws(lambda counts: np.stack([_auroc(t, counts) for t in tables], axis=1), k,
                                          n=y.shape[0], n_boot=n_boot, seed=seed)
    return draws


def percentile_interval(draws: np.ndarray, ci: float = 0.95) -> list[float]:
    """[low, high] percentile interval of the finite draws; [NaN, NaN] when there are none."""
    values = np.asarray(draws, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not values.size:
        return [float("nan"), float("nan")]
    tail = (1.0 - ci) / 2.0 * 100.0
    return [float(v) for v in np.percentile(values, [tail, 100.0 - tail])]


def macro_draws(draws: np.ndarray) -> np.ndarray:
    """(n_boot,) macro AUROC per resample: the mean over the findings defined in it (NaN: none is)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample where no finding has both classes
        return np.nanmean(draws, axis=1)


def _cluster_draws(statistic, k: int, *, n: int, n_boot: int, seed: int) -> np.ndarray:
    """`statistic` (B, k) cluster counts -> (B,) over `n_boot` resamples of the k clusters, in memory-bounded chunks."""
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // n)  # resamples x images per chunk bounds memory
    draws = []
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        picks = rng.integers(0, k, size=(size, k)) + (np.arange(size) * k)[:, None]
        counts = np.bincount(picks.ravel(), minlength=size * k).reshape(size, k).astype(np.float64)
        draws.append(statistic(counts))
    return np.concatenate(draws)


def _group_table(positive: np.ndarray, scores: np.ndarray, cluster: np.ndarray, k: int):
    """Sparse (tie groups x clusters) counts of positive and of negative images, tie groups by descending score."""
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    group = np.concatenate([[0], np.cumsum(s[1:] != s[:-1])])
    shape = (int(group[-1]) + 1, k)
    pos = positive[order]
    return tuple(sparse.csr_matrix((np.ones(int(mask.sum())), (group[mask], cluster[order][mask])), shape=shape)
                 for mask in (pos, ~pos))


def _auroc(table, counts: np.ndarray) -> np.ndarray:
    """AUROC for every row of (B, K) cluster counts (a cluster drawn twice is two tied copies; ties credit 1/2);
    NaN where a row holds no positive or no negative."""
    gp, gn = (np.asarray(part @ counts.T).T for part in table)  # (B, groups) weights per tie group
    wp, wn = gp.sum(axis=1), gn.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auroc = (gp * (wn[:, None] - np.cumsum(gn, axis=1) + 0.5 * gn)).sum(axis=1) / (wp * wn)
    auroc[(wp == 0) | (wn == 0)] = np.nan
    return auroc


def _macro_diffs(tables, counts: np.ndarray) -> np.ndarray:
    """(B,) mean over findings of AUROC(a) - AUROC(b), each row over the findings defined in it (NaN: none)."""
    diffs = np.stack([_auroc(table_a, counts) - _auroc(table_b, counts) for table_a, table_b in tables], axis=1)
    finite = np.isfinite(diffs)
    mean = np.where(finite, diffs, 0.0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1)
    mean[~finite.any(axis=1)] = np.nan
    return mean
