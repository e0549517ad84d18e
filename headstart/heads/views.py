"""`heads --views on|off` and `--tta on|off`: heads on the cached views of `extract --views K --tta M`.

- torch heads (linear, MLP) see each train row as one of its K + 1 views (the plain one counts), drawn per seed
  and epoch inside the batched sweep (`heads.batched_data.TrainData.epoch_rows`): augmentation at cache speed;
- logreg and kNN train on each image's K + 1 views as rows of their own (`VIEW_ROWS`), which share the image's
  id and patient, so cross-validation folds and carved hold-outs keep an image's views, then a patient's images,
  together. The other choice, each image's view mean (one row per image), was measured against it
  (benchmarks/views_rows.py, 600 real Kaggle images, resnet18 random weights, K = 4): test AUROC logreg 0.975
  with rows vs 0.970 with the mean (paired DeLong p = 0.12), kNN 0.981 vs 0.959 (p = 0.02); sweep time (median
  of 3, loaded 2-core machine) logreg 10.6 vs 21.7 s, kNN 0.07 vs 0.03 s;
- TTA: a head's probabilities on val and test are the mean over the plain view and the M test-time views, and
  the threshold is chosen on val with the same averaging (`tta_proba`).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from headstart.errors import CacheError
from headstart.heads.protocol import Rows, full_proba

log = logging.getLogger(__name__)

SWITCH = ("off", "on")
TORCH_KINDS = ("linear", "mlp")  # heads that sample one view per row per epoch; the others take the view mean
ROW_MODES = ("mean", "rows")  # the other heads: one row per image (the view mean), or K + 1 rows per image
VIEW_ROWS: dict[str, str] = {"logreg": "rows", "knn": "rows"}  # the measured choice (module notes)


def attach_views(cache, name: str, splits: dict[str, Rows], valid: np.ndarray, *, views: bool,
                 tta: bool) -> dict[str, Rows]:
    """`splits` with train's cached views (`Rows.views`) and val's and test's test-time views (`Rows.tta`).

    Rows are matched as `heads.runner` made them (each split's valid rows in cache order). A train row without
    views (its split changed after extraction) keeps its plain view in their place; a val or test row without
    test-time views is refused, as its averaged probability would be a different quantity.
    """
    index = {s: np.flatnonzero((cache.splits == s) & valid) for s in ("train", "val", "test")}
    out = dict(splits)
    if views:
        V, has = cache.load_views(name, "views")
        train = out["train"]
        v = V[index["train"]]
        missing = ~has[index["train"]]
        if missing.any():
            v[missing] = train.X[missing, None, :]
            log.warning("%d train images of '%s' have no cached views (splits changed after extraction); their "
                        "plain view stands in", int(missing.sum()), name)
        out["train"] = dataclasses.replace(train, views=v)
    if tta:
        T, has = cache.load_views(name, "tta")
        for split in ("val", "test"):
            lacking = int((~has[index[split]]).sum())
            if lacking:
                raise CacheError(f"{lacking} {split} images of '{name}' in {cache.path} have no cached test-time "
                                 f"views (the splits changed after extraction); re-extract with --tta M --overwrite, "
                                 f"or run heads with --tta off")
            out[split] = dataclasses.replace(out[split], tta=T[index[split]])
    return out


def for_head(head: str, splits: dict[str, Rows], *, mode: str | None = None) -> dict[str, Rows]:
    """The rows a head trains on: torch heads keep the views (sampled per epoch); the others the views as extra
    rows or the view mean (`mode`: "rows" or "mean", default `VIEW_ROWS[head]`, else mean)."""
    train = splits["train"]
    if train.views is None or head in TORCH_KINDS:
        return splits
    mode = mode or VIEW_ROWS.get(head, "mean")
    if mode not in ROW_MODES:
        raise ValueError(f"view row mode {mode!r} is unknown; expected one of {', '.join(ROW_MODES)}")
    n, k, d = train.views.shape
    if mode == "rows":  # every image's rows share its id and patient, so folds and carving keep them together
        X = np.concatenate([train.X, train.views.reshape(n * k, d).astype(train.X.dtype, copy=False)])
        rep = np.repeat(np.arange(n), k)  # views (n, K, D) flatten image-major
        return {**splits, "train": Rows(X, np.concatenate([train.y, train.y[rep]]),
                                        np.concatenate([train.ids, train.ids[rep]]),
                                        np.concatenate([train.groups, train.groups[rep]]),
                                        mask=None if train.mask is None else np.concatenate([train.mask, train.mask[rep]]))}
    mean = (train.X + train.views.sum(axis=1)) / (k + 1)
    return {**splits, "train": dataclasses.replace(train, X=mean.astype(train.X.dtype), views=None)}


def tta_proba(estimator, rows: Rows, n_classes: int, plain: np.ndarray) -> np.ndarray:
    """Mean probabilities over the plain view (`plain`, already computed) and each of the rows' M TTA views."""
    return plain if rows.tta is None else average_views(estimator, plain, rows.tta, n_classes)


def average_views(estimator, plain: np.ndarray, views: np.ndarray, n_classes: int) -> np.ndarray:
    """(plain + the estimator's probabilities on each of `views` (n, M, D)) / (M + 1): what heads records with
    --tta on, and what `predict` computes for such a run (from cached or freshly extracted views)."""
    total = np.asarray(plain, dtype=np.float64).copy()
    for m in range(views.shape[1]):
        total += full_proba(estimator, np.ascontiguousarray(views[:, m], dtype=np.float32), n_classes)
    return (total / (views.shape[1] + 1)).astype(np.asarray(plain).dtype)


def variant(views: str, tta: str) -> str | None:
    """The run-id part that keeps view and TTA runs apart from plain ones (None: a plain run)."""
    return "-".join(part for part, on in (("views", views == "on"), ("tta", tta == "on")) if on) or None
