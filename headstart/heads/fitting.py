"""Fitting a head's whole sweep on one feature set: every config on train, scored on val or by cross-validation.

With a val split, every config is fitted on train and predicts val (one batched model, warm-started path or
neighbour search per head). With an empty val split, every config predicts out of fold in a 5-fold (grouped
where patients are known) stratified cross-validation on train; the selected config is then refitted on all of
train (`refit`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from headstart.errors import DataError
from headstart.evaluation.timing import Timer
from headstart.heads.batched import train_batched_seeds
from headstart.heads.knn import KNNHead, knn_sweep
from headstart.heads.logreg import LogRegHead, fit_logreg_path
from headstart.heads.sweep import SweepGrid, torch_configs
from headstart.heads.torch_heads import LinearHead, MLPHead

log = logging.getLogger(__name__)

CV_FOLDS = 5  # folds of the cross-validation that replaces an empty val split


@dataclass
class Rows:
    """One split of one feature set: features, label indices, sample ids and patient groups."""

    X: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    groups: np.ndarray

    def take(self, index: np.ndarray) -> Rows:
        return Rows(self.X[index], self.y[index], self.ids[index], self.groups[index])


@dataclass
class FitSettings:
    """What every fit of a sweep shares, passed as one object."""

    grid: SweepGrid  # the configs and the torch heads' epochs, batch size and patience
    class_weight: str | None  # "balanced" or None (see data.balance.class_weight_mode)
    n_classes: int  # classes of the cache; probabilities always have this many columns
    device: Any  # where the torch heads train
    precision: str = "fp32"  # the torch heads' training steps, "fp32" or "bf16" (device.head_precision)


@dataclass
class Candidate:
    """One config of a sweep after fitting: its val (or out-of-fold) probabilities and, unless it must be
    refitted after cross-validation, the fitted estimator."""

    params: dict
    val_proba: np.ndarray
    estimator: object | None
    best_epoch: int | None = None
    history: list = field(default_factory=list)
    _scored: tuple | None = field(default=None, repr=False)  # (X, proba) of the last `proba` call

    def proba(self, X: np.ndarray, n_classes: int) -> np.ndarray:
        """The fitted estimator's probabilities on X, remembered for the same X: every seed of a shared
        (logreg, kNN) sweep scores the same test rows with the same estimator, and kNN's search is not free."""
        if self._scored is None or self._scored[0] is not X:
            self._scored = (X, full_proba(self.estimator, X, n_classes))
        return self._scored[1]


@dataclass
class Sweep:
    """Every candidate of one head's sweep, how long fitting them took, and the rows they were scored on."""

    candidates: list[Candidate]
    seconds: float
    selection: str  # "val" or "cv-<k>fold"
    select_rows: Rows  # rows the candidates' val_proba belong to


def run_sweep(head: str, splits: dict[str, Rows], *, fit: FitSettings, seed: int) -> Sweep:
    """Fit and score every config of `head`, on val when there is one, else by cross-validation on train."""
    (sweep,) = run_sweeps(head, splits, fit=fit, seeds=(seed,))
    return sweep


def run_sweeps(head: str, splits: dict[str, Rows], *, fit: FitSettings, seeds: Sequence[int]) -> list[Sweep]:
    """`run_sweep` for several seeds; with a val split, a torch head's seeds train together in one batched
    loop, and each seed's `seconds` is its share of that loop's wall time."""
    train, val = splits["train"], splits["val"]
    if not len(val.y):
        return [run_sweep_cv(head, train, fit=fit, seed=seed) for seed in seeds]
    with Timer(device=fit.device) as timer:
        per_seed = fit_sweeps(head, train, val, fit=fit, seeds=seeds)
    return [Sweep(candidates, timer.seconds / len(seeds), "val", val) for candidates in per_seed]


def run_sweep_cv(head: str, train: Rows, *, fit: FitSettings, seed: int) -> Sweep:
    with Timer(device=fit.device) as timer:
        candidates, folds = cv_sweep(head, train, fit=fit, seed=seed)
    return Sweep(candidates, timer.seconds, f"cv-{folds}fold", train)


def fit_sweep(head: str, train: Rows, val: Rows, *, fit: FitSettings, seed: int) -> list[Candidate]:
    """Fit every config of `head` on train and predict val; one batched model / path / search per head."""
    (candidates,) = fit_sweeps(head, train, val, fit=fit, seeds=(seed,))
    return candidates


def fit_sweeps(head: str, train: Rows, val: Rows, *, fit: FitSettings,
               seeds: Sequence[int]) -> list[list[Candidate]]:
    """`fit_sweep` for several seeds. logreg and kNN ignore the seed, so they fit once and every seed gets the
    same candidates; the torch heads train every seed's configs in one batched loop (`train_batched_seeds`)."""
    params = fit.grid.configs(head)
    if head == "logreg":
        fitted = fit_logreg_path(train.X, train.y, [p["C"] for p in params], class_weight=fit.class_weight)
        return [[Candidate(p, full_proba(h, val.X, fit.n_classes), h) for p, h in zip(params, fitted)]] * len(seeds)
    if head == "knn":
        fitted = knn_sweep(train.X, train.y, val.X, [p["k"] for p in params], class_weight=fit.class_weight)
        return [[Candidate(p, expand(proba, h.classes_, fit.n_classes), h)
                 for p, (h, proba) in zip(params, fitted)]] * len(seeds)
    settings = dataclasses.replace(fit.grid.train, class_weight=fit.class_weight, precision=fit.precision,
                                   halving=fit.grid.mlp_halving if head == "mlp" else fit.grid.train.halving)
    per_seed = train_batched_seeds(train.X, train.y, val.X, val.y, configs=torch_configs(params), settings=settings,
                                   n_classes=fit.n_classes, device=fit.device, seeds=seeds)
    cls = MLPHead if head == "mlp" else LinearHead
    return [[Candidate(p, r.val_proba, cls._from_batched(r, np.arange(fit.n_classes), settings=settings, seed=seed,
                                                          device=str(fit.device)), r.best_epoch, r.history)
             for p, r in zip(params, results)]
            for seed, results in zip(seeds, per_seed)]


def cv_sweep(head: str, train: Rows, *, fit: FitSettings, seed: int) -> tuple[list[Candidate], int]:
    """Out-of-fold val probabilities for every config; estimators are refitted on all of train after selection."""
    counts = np.bincount(train.y)
    folds = min(CV_FOLDS, int(counts[counts > 0].min()))  # every fold needs each class once
    if folds < 2:
        raise DataError("val is empty and a class has only one train row, so cross-validation cannot replace it; "
                        "add a val split or more train rows of that class")
    grouped = bool(np.all(train.groups != "")) and len(np.unique(train.groups)) >= folds
    splitter = (StratifiedGroupKFold if grouped else StratifiedKFold)(n_splits=folds, shuffle=True, random_state=seed)
    log.warning("val split is empty: selecting the config and threshold by %d-fold %sstratified cross-validation "
                "on train, then refitting it on all of train", folds, "grouped " if grouped else "")
    params = fit.grid.configs(head)
    oof = [np.zeros((len(train.y), fit.n_classes), dtype=np.float32) for _ in params]
    epochs: list[list[int]] = [[] for _ in params]
    for fit_idx, held_idx in splitter.split(train.X, train.y, groups=train.groups if grouped else None):
        fold = fit_sweep(head, train.take(fit_idx), train.take(held_idx), fit=fit, seed=seed)
        for i, cand in enumerate(fold):
            oof[i][held_idx] = cand.val_proba
            if cand.best_epoch is not None:
                epochs[i].append(cand.best_epoch)
    return [Candidate(p, proba, None, int(round(np.mean(e))) if e else None)
            for p, proba, e in zip(params, oof, epochs)], folds


def refit(head: str, cand: Candidate, train: Rows, *, fit: FitSettings, seed: int) -> object:
    """Fit the selected config on all of train; torch heads train for the mean early-stopped epoch of the folds."""
    if head == "logreg":
        return LogRegHead(C=cand.params["C"], class_weight=fit.class_weight).fit(train.X, train.y)
    if head == "knn":
        return KNNHead(k=cand.params["k"], class_weight=fit.class_weight).fit(train.X, train.y)
    train_settings = fit.grid.train
    cls = MLPHead if head == "mlp" else LinearHead
    est = cls(**cand.params, epochs=max(1, cand.best_epoch or train_settings.epochs),
              batch_size=train_settings.batch_size, patience=train_settings.patience, class_weight=fit.class_weight,
              seed=seed, device=str(fit.device), precision=fit.precision)
    return est.fit(train.X, train.y)


def full_proba(estimator, X: np.ndarray, n_classes: int) -> np.ndarray:
    """An estimator's probabilities on X over all cache classes."""
    return expand(estimator.predict_proba(X), estimator.classes_, n_classes)


def expand(proba: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities over the estimator's classes -> over all cache classes (absent ones get 0)."""
    classes = np.asarray(classes)
    if proba.shape[1] == n_classes and np.array_equal(classes, np.arange(n_classes)):
        return proba
    out = np.zeros((proba.shape[0], n_classes), dtype=proba.dtype)
    out[:, classes.astype(np.int64)] = proba[:, : len(classes)]
    return out
