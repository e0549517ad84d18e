"""The audit's own classifier: logistic regression (the heads' LogRegHead), C selected on val, scored on test.

The baseline, the reference scores behind the shuffle floor and the power estimate, and the domain classifier
all use this one estimator, so their numbers are comparable with a `heads --head logreg` run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headstart.evaluation.metrics import batch_ranking
from headstart.heads.logreg import LogRegHead, fit_logreg_path


@dataclass
class Fitted:
    """A head selected on val: the estimator, its C and how it was chosen."""

    head: LogRegHead
    C: float
    val_auroc: float  # NaN when val could not score it
    selection: str  # "val" or why the default C was kept


def auroc(y: np.ndarray, proba: np.ndarray) -> float:
    """AUROC (one-vs-rest macro for several classes) of (n, C) probabilities; NaN when a class is absent."""
    if len(y) == 0 or np.unique(y).size < 2:
        return float("nan")
    return float(batch_ranking(np.asarray(y), np.asarray(proba, dtype=np.float64)[None])["auroc"][0])


def select_logreg(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *,
                  Cs: tuple[float, ...], n_classes: int, max_iter: int = 1000) -> Fitted:
    """Fit one balanced logistic regression per C on train and keep the best val AUROC (ties: smaller C).

    A val split that is empty or has one class cannot rank the Cs; the middle C is kept and the reason recorded.
    """
    heads = fit_logreg_path(x_train, y_train, Cs, class_weight="balanced", max_iter=max_iter)
    if len(y_val) == 0 or np.unique(y_val).size < 2:
        k = len(Cs) // 2
        return Fitted(heads[k], float(Cs[k]), float("nan"), "default C (val is empty or has one class)")
    scores = [auroc(y_val, _full_proba(h, x_val, n_classes=n_classes)) for h in heads]
    k = int(np.nanargmax(scores)) if np.isfinite(scores).any() else len(Cs) // 2
    return Fitted(heads[k], float(Cs[k]), float(scores[k]), "val")


def predict_proba(fitted: Fitted | LogRegHead, x: np.ndarray, *, n_classes: int) -> np.ndarray:
    """(n, n_classes) probabilities, with zero columns for classes the head never saw in training."""
    head = fitted.head if isinstance(fitted, Fitted) else fitted
    return _full_proba(head, x, n_classes=n_classes)


def stratified_subsample(rows: np.ndarray, labels: np.ndarray, *, max_rows: int,
                         rng: np.random.Generator) -> np.ndarray:
    """At most `max_rows` of `rows`, keeping each class's share (bounds the audit's fit time on 100k-image caches)."""
    if len(rows) <= max_rows:
        return rows
    keep = []
    for k in np.unique(labels[rows]):
        members = rows[labels[rows] == k]
        take = max(1, round(len(members) * max_rows / len(rows)))
        keep.append(rng.choice(members, size=min(take, len(members)), replace=False))
    return np.sort(np.concatenate(keep))


def _full_proba(head: LogRegHead, x: np.ndarray, *, n_classes: int) -> np.ndarray:
    proba = head.predict_proba(x)
    if proba.shape[1] == n_classes:
        return proba
    full = np.zeros((len(x), n_classes))
    full[:, np.asarray(head.classes_, dtype=np.int64)] = proba
    return full


def why_not_fittable(splits: np.ndarray, labels: np.ndarray, classes: list[str]) -> str | None:
    """Why a train -> test classifier cannot be scored on these splits, or None when it can."""
    for split in ("train", "test"):
        present = np.unique(labels[splits == split])
        if present.size == 0:
            return f"the cache has no {split} split"
        if present.size < 2:
            return (f"the {split} split holds one class only ({_class_name(classes, int(present[0]))}); "
                    "AUROC needs both classes")
    return None


def _class_name(classes: list[str], k: int) -> str:
    return classes[k] if 0 <= k < len(classes) else str(k)
