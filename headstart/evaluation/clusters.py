"""Patient-clustered resampling: the images of one patient enter or leave a bootstrap resample together.

Images of one patient are correlated (same anatomy, same scanner, often the same label), so resampling images as
if they were independent gives intervals that are too narrow. `/samples/group` knows the patients: a cluster is
one non-blank group, and an image with a blank group is a cluster of its own (the sampler's rule).

A cluster resample is a vector of weights, one per image (how many times its cluster was drawn), so every
resample has the same (n,) layout even though patients hold different numbers of images. The metrics are then
weighted sums over one fixed sort of the scores, which vectorises over all resamples at once (no per-resample
sort, unlike the image bootstrap's index matrices). Clusters are drawn within strata: a cluster whose images
share one class is in that class's stratum, a mixed cluster in a stratum of its own kind, so every resample keeps
the number of clusters of each kind and AUROC stays defined whenever it is defined on the split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from headstart.evaluation import metrics as M


def cluster_index(groups: Sequence[str] | np.ndarray | None, n: int) -> np.ndarray | None:
    """(n,) cluster number per image, or None when no patient holds two images (then images are the clusters
    and the ordinary bootstrap applies). Blank groups are clusters of one image each."""
    if groups is None:
        return None
    g = np.asarray([str(v).strip() for v in groups], dtype=object)
    if g.shape != (n,):
        raise ValueError(f"{g.size} groups for {n} samples; expected one group per sample")
    blank = g == ""
    _, named = np.unique(g[~blank].astype(str), return_inverse=True)
    cluster = np.empty(n, dtype=np.int64)
    cluster[~blank] = named
    cluster[blank] = named.max(initial=-1) + 1 + np.arange(int(blank.sum()))
    return None if cluster.max(initial=-1) + 1 == n else cluster


def n_clusters(cluster: np.ndarray | None, n: int) -> int:
    return n if cluster is None else int(cluster.max()) + 1


def cluster_weights(cluster: np.ndarray, y: np.ndarray, *, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) image weights: each row draws, within each stratum of clusters, as many clusters as the stratum
    holds, with replacement; an image's weight is how often its cluster was drawn."""
    k = int(cluster.max()) + 1
    lowest = np.full(k, np.iinfo(np.int64).max)
    highest = np.full(k, np.iinfo(np.int64).min)
    np.minimum.at(lowest, cluster, y)
    np.maximum.at(highest, cluster, y)
    stratum = np.where(lowest == highest, lowest, -1)  # -1: a cluster holding several classes
    counts = np.zeros((n_boot, k))
    for s in np.unique(stratum):
        members = np.flatnonzero(stratum == s)
        m = members.size
        draws = rng.integers(0, m, size=(n_boot, m)) + (np.arange(n_boot) * m)[:, None]
        counts[:, members] = np.bincount(draws.ravel(), minlength=n_boot * m).reshape(n_boot, m)
    return counts[:, cluster]


def weighted_auroc_auprc(positive: np.ndarray, scores: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and average precision of every weight row of (B, n) `w` over one (n,) score vector, from one sort.

    Equal to `metrics.batch_auroc_auprc` on the resample the weights stand for (an image of weight 2 is two tied
    copies): per tie group, the negative weight below gives the U statistic (ties credit 1/2), and the precision
    at the group's end, weighted by its positive weight, gives sklearn's average precision.
    """
    order = np.argsort(-scores, kind="stable")
    s, pos, w = scores[order], positive[order], w[:, order]
    starts = np.flatnonzero(np.concatenate([[True], s[1:] != s[:-1]]))
    gp = np.add.reduceat(w * pos, starts, axis=1)  # (B, groups) positive weight per tie group, descending score
    gn = np.add.reduceat(w * ~pos, starts, axis=1)
    wp, wn = gp.sum(axis=1), gn.sum(axis=1)
    neg_below = wn[:, None] - np.cumsum(gn, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auroc = (gp * (neg_below + 0.5 * gn)).sum(axis=1) / (wp * wn)
        precision = np.cumsum(gp, axis=1) / np.cumsum(gp + gn, axis=1)
        auprc = np.nansum(gp * precision, axis=1) / wp
    bad = (wp == 0) | (wn == 0)
    auroc[bad], auprc[bad] = np.nan, np.nan
    return auroc, auprc


def score_weighted(y: np.ndarray, proba: np.ndarray, w: np.ndarray, per_sample: dict[str, np.ndarray], *,
                   threshold: float | None, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Every requested metric for every weight row of `w`, as `bootstrap._score_resamples` does for index rows."""
    out: dict[str, np.ndarray] = {}
    n_classes = proba.shape[1]
    if {"auroc", "auprc"} & set(names):
        if n_classes == 2:
            out["auroc"], out["auprc"] = weighted_auroc_auprc(y == 1, proba[:, 1], w)
        else:
            pairs = [weighted_auroc_auprc(y == k, proba[:, k], w) for k in range(n_classes)]
            out["auroc"] = M._nanmean_rows(np.stack([a for a, _ in pairs], axis=1))
            out["auprc"] = M._nanmean_rows(np.stack([b for _, b in pairs], axis=1))
    if {"accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1"} & set(names):
        cell = y * n_classes + M.predict(proba, threshold)  # (true, predicted) cell of each image
        cm = w @ np.eye(n_classes * n_classes)[cell]
        out.update(M.rates_from_confusion(cm.reshape(-1, n_classes, n_classes)))
    for name, losses in per_sample.items():
        if name in names:
            out[name] = (w @ losses) / w.sum(axis=1)
    return out
