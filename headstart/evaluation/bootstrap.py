"""Stratified percentile-bootstrap intervals, vectorised over resamples; patient-clustered where groups are known.

Every resample keeps the class counts of the split (resampling within each class), so AUROC is defined in
every resample whenever it is defined on the split, and the interval reflects score variability rather than
prevalence noise. All resamples of a chunk are scored at once by the batch kernels in `metrics`.

With `groups` (the split's `/samples/group`) and a patient holding two images or more, patients are resampled
instead of images (`clusters`: a cluster bootstrap, stratified by class where a patient's images share one), and
`evaluate` records `ci_method` (`cluster-bootstrap` or `bootstrap`) and `n_clusters` (patients; images when
every image is its own cluster).
"""

from __future__ import annotations

import warnings

import numpy as np

from headstart.errors import ConfigError, DataError
from headstart.evaluation import metrics as M
from headstart.evaluation.clusters import cluster_index, cluster_weights, n_clusters, score_weighted

DEFAULT_CI_METRICS = ("auroc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1", "auprc")
BOOTSTRAP_METRICS = DEFAULT_CI_METRICS + ("log_loss", "brier")  # every name bootstrap_ci can interval
_CHUNK_ELEMENTS = 2_000_000  # resamples x samples scored per chunk: bounds memory near 100 MB for binary


def stratified_indices(y: np.ndarray, *, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) sample indices; columns are grouped by class, so `y[idx[b]]` is the same for every b."""
    columns = [rng.choice(np.flatnonzero(y == k), size=(n_boot, int((y == k).sum())), replace=True)
               for k in np.unique(y)]
    return np.concatenate(columns, axis=1)


def bootstrap_ci(
    y_true: np.ndarray,
    proba: np.ndarray,
    *,
    threshold: float | None,
    metrics: tuple[str, ...] = DEFAULT_CI_METRICS,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    groups=None,
) -> dict[str, list[float]]:
    """Percentile interval `[low, high]` per metric from `n_boot` stratified resamples; NaN-safe and seeded.
    `groups` (one per sample, "" unknown) resamples patients instead of images when a patient has two images."""
    unknown = [name for name in metrics if name not in BOOTSTRAP_METRICS]
    if unknown:
        raise ConfigError(
            f"cannot bootstrap metric(s) {', '.join(unknown)}; expected names from {', '.join(BOOTSTRAP_METRICS)}"
        )
    if not 0.0 < ci < 1.0:
        raise ConfigError(f"confidence level {ci} is outside (0, 1); use e.g. 0.95")
    if n_boot < 1:
        raise ConfigError(f"n_boot is {n_boot}; expected at least 1 resample")
    y = M.as_labels(y_true)
    p = M.as_proba(proba, n=len(y))
    y = M.as_labels(y, n_classes=p.shape[1])
    if len(y) == 0:
        raise DataError("no samples to bootstrap; expected a non-empty split; check the split sizes")

    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // (len(y) * (1 if p.shape[1] == 2 else p.shape[1])))
    per_sample = {"log_loss": M.sample_log_loss(y, p), "brier": M.sample_brier(y, p)}
    cluster = cluster_index(groups, len(y))
    ranks = M.dense_ranks(p) if cluster is None else None  # same AUROC/AUPRC as the probabilities, sorted faster
    values: dict[str, list[np.ndarray]] = {name: [] for name in metrics}
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        if cluster is None:
            idx = stratified_indices(y, n_boot=size, rng=rng)
            y_resampled = y[idx[0]]  # identical for every row, by construction
            scored = _score_resamples(y_resampled, p, ranks, idx, per_sample, threshold=threshold, names=metrics)
        else:
            weights = cluster_weights(cluster, y, n_boot=size, rng=rng)
            scored = score_weighted(y, p, weights, per_sample, threshold=threshold, names=metrics)
        for name in metrics:
            values[name].append(scored[name])

    tail = (1.0 - ci) / 2.0 * 100.0
    out = {}
    for name in metrics:
        draws = np.concatenate(values[name])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN draws give [nan, nan], by design
            low, high = np.nanpercentile(draws, [tail, 100.0 - tail])
        out[name] = [float(low), float(high)]
    return out


def _score_resamples(y_resampled, proba, ranks, idx, per_sample, *, threshold, names) -> dict[str, np.ndarray]:
    """Every requested metric for every row of the index matrix `idx`; the ranking metrics read `ranks`."""
    out: dict[str, np.ndarray] = {}
    if {"auroc", "auprc"} & set(names):
        out.update(M.batch_ranking(y_resampled, ranks[idx]))
    if {"accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1"} & set(names):
        pred = M.predict(proba, threshold)[idx]
        out.update(M.rates_from_confusion(M.batch_confusion(y_resampled, pred, proba.shape[1])))
    for name, losses in per_sample.items():
        if name in names:
            out[name] = losses[idx].mean(axis=1)
    return out


def evaluate(
    y_true: np.ndarray, proba: np.ndarray, *, threshold: float | None, n_boot: int = 1000, seed: int = 0,
    groups=None,
) -> dict:
    """`compute_metrics` plus `<name>_ci: [low, high]` (95%) for each bootstrapped metric: one record split, with
    `ci_method` and `n_clusters` saying whether patients (`groups`) or images were resampled, and how many."""
    result = M.compute_metrics(y_true, proba, threshold=threshold)
    intervals = bootstrap_ci(y_true, proba, threshold=threshold, n_boot=n_boot, seed=seed, groups=groups)
    result.update({f"{name}_ci": interval for name, interval in intervals.items()})
    cluster = cluster_index(groups, len(np.asarray(y_true)))
    result["ci_method"] = "bootstrap" if cluster is None else "cluster-bootstrap"
    result["n_clusters"] = n_clusters(cluster, len(np.asarray(y_true)))
    return result
