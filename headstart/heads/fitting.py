"""Fitting a head's whole sweep on one feature set: every config on train, scored on val or by cross-validation.

With a val split, every config is fitted on train and predicts val (one batched model, warm-started path or
neighbour search per head). With an empty val split (`cv_sweep`, `applied_model`):
- every config predicts out of fold in a k-fold cross-validation on train, stratified by class and grouped by
  patient with the sampler's rule (`data.sampling`: a blank group is a patient of its own, and never turns
  grouping off for the others);
- a torch head early-stops on an inner split of its training fold (whole patients, 1/5 of it), never on the
  fold it then predicts, so the out-of-fold scores that choose the config are not optimistic;
- the chosen config is fitted once more, on train minus a held-out 1/5 of train (whole patients, stratified);
  a torch head early-stops on that hold-out, and the threshold is chosen on that model's predictions of it.
  That model is the one tested and saved, so its threshold was chosen for it, on rows it never trained on.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from headstart.data.sampling import carve, kfold, units_per_stratum
from headstart.errors import DataError
from headstart.evaluation.timing import Timer
from headstart.heads.batched import train_batched_seeds
from headstart.heads.knn import knn_sweep
from headstart.heads.logreg import fit_logreg_path
from headstart.heads.sweep import SweepGrid, torch_configs
from headstart.heads.torch_heads import LinearHead, MLPHead

log = logging.getLogger(__name__)

CV_FOLDS = 5  # folds of the cross-validation that replaces an empty val split
HELD_OUT = 0.2  # share of rows held out after an empty val: to stop a torch head early, or for the threshold
# Salts of the sampler's random streams, so folds, inner stopping splits and the final hold-out never coincide
_FOLD_STREAM, _STOP_STREAM, _HOLD_STREAM = 31, 32, 33


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


def fit_sweep(head: str, train: Rows, val: Rows, *, fit: FitSettings, seed: int, params: list[dict] | None = None,
              stop_split: Callable[[Rows], np.ndarray] | None = None) -> list[Candidate]:
    """Fit every config of `head` on train and predict val; one batched model / path / search per head."""
    (candidates,) = fit_sweeps(head, train, val, fit=fit, seeds=(seed,), params=params, stop_split=stop_split)
    return candidates


def fit_sweeps(head: str, train: Rows, val: Rows, *, fit: FitSettings, seeds: Sequence[int],
               params: list[dict] | None = None,
               stop_split: Callable[[Rows], np.ndarray] | None = None) -> list[list[Candidate]]:
    """`fit_sweep` for several seeds. logreg and kNN ignore the seed, so they fit once and every seed gets the
    same candidates; the torch heads train every seed's configs in one batched loop (`train_batched_seeds`).

    `params`: the configs to fit (default: the grid's). `stop_split`: for heads that stop early, the positions
    of the train rows to stop on instead of val; such a head then fits on the other train rows and predicts val
    with the weights it kept. Heads that do not stop early fit on all of train and never call it.
    """
    params = fit.grid.configs(head) if params is None else params
    if head == "logreg":
        fitted = fit_logreg_path(train.X, train.y, [p["C"] for p in params], class_weight=fit.class_weight)
        return [[Candidate(p, full_proba(h, val.X, fit.n_classes), h) for p, h in zip(params, fitted)]] * len(seeds)
    if head == "knn":
        fitted = knn_sweep(train.X, train.y, val.X, [p["k"] for p in params], class_weight=fit.class_weight)
        return [[Candidate(p, expand(proba, h.classes_, fit.n_classes), h)
                 for p, (h, proba) in zip(params, fitted)]] * len(seeds)
    settings = dataclasses.replace(fit.grid.train, class_weight=fit.class_weight, precision=fit.precision,
                                   halving=fit.grid.mlp_halving if head == "mlp" else fit.grid.train.halving)
    fit_rows, stop_rows = train, val
    if stop_split is not None:
        stop = np.zeros(len(train.y), dtype=bool)
        stop[stop_split(train)] = True
        fit_rows, stop_rows = train.take(np.flatnonzero(~stop)), train.take(np.flatnonzero(stop))
    per_seed = train_batched_seeds(fit_rows.X, fit_rows.y, stop_rows.X, stop_rows.y, configs=torch_configs(params),
                                   settings=settings, n_classes=fit.n_classes, device=fit.device, seeds=seeds)
    cls = MLPHead if head == "mlp" else LinearHead
    out = []
    for seed, results in zip(seeds, per_seed):
        heads = [cls._from_batched(r, np.arange(fit.n_classes), settings=settings, seed=seed, device=str(fit.device))
                 for r in results]
        out.append([Candidate(p, r.val_proba if stop_rows is val else full_proba(h, val.X, fit.n_classes), h,
                              r.best_epoch, r.history) for p, r, h in zip(params, results, heads)])
    return out


def cv_sweep(head: str, train: Rows, *, fit: FitSettings, seed: int) -> tuple[list[Candidate], int]:
    """Out-of-fold val probabilities for every config of a grouped, stratified k-fold on train (module doc);
    the selected config is fitted again afterwards (`applied_model`)."""
    folds = min(CV_FOLDS, int(units_per_stratum(train.ids, train.groups, train.y).min()))
    if folds < 2:  # every fold's training part needs each class
        raise DataError("val is empty and a class has only one train patient (or ungrouped image), so "
                        "cross-validation cannot replace val; add a val split or more train rows of that class")
    fold_of = kfold(train.ids, train.groups, train.y, k=folds, seed=(seed, _FOLD_STREAM))
    log.warning("val split is empty: selecting the config by %d-fold stratified cross-validation on train, grouped "
                "by patient (an ungrouped image is a patient of its own), then fitting it on train minus a held-out "
                "fifth, on which the threshold is chosen", folds)
    params = fit.grid.configs(head)
    oof = [np.zeros((len(train.y), fit.n_classes), dtype=np.float32) for _ in params]
    for f in range(folds):
        held_idx = np.flatnonzero(fold_of == f)
        if not len(held_idx):  # possible only when a few patients hold most rows
            continue
        fold = fit_sweep(head, train.take(np.flatnonzero(fold_of != f)), train.take(held_idx), fit=fit, seed=seed,
                         stop_split=lambda rows, f=f: _held_out(rows, seed=(seed, _STOP_STREAM, f)))
        for i, cand in enumerate(fold):
            oof[i][held_idx] = cand.val_proba
    return [Candidate(p, proba, None) for p, proba in zip(params, oof)], folds


@dataclass
class Applied:
    """The model a run tests and saves, and the rows (with its probabilities) its threshold is chosen on."""

    candidate: Candidate  # fitted; its val_proba belong to `rows`
    rows: Rows
    seconds: float  # fitting time beyond the sweep's


def applied_model(head: str, sweep: Sweep, cand: Candidate, train: Rows, *, fit: FitSettings, seed: int) -> Applied:
    """The selected candidate itself after selection on val. After cross-validation, the selected config fitted
    on train minus a held-out fifth of whole patients: torch heads stop early on that fifth, and the threshold
    is chosen on this model's predictions of it, so it is chosen for the model that is applied."""
    if cand.estimator is not None:
        return Applied(cand, sweep.select_rows, 0.0)
    with Timer(device=fit.device) as timer:
        held = _held_out(train, seed=(seed, _HOLD_STREAM))
        if not len(held):
            raise DataError("val is empty and train's patients cannot be split to hold some out for the threshold "
                            "(one patient holds most rows); add a val split")
        rest = np.setdiff1d(np.arange(len(train.y)), held)
        (final,) = fit_sweep(head, train.take(rest), train.take(held), fit=fit, seed=seed, params=[cand.params])
    return Applied(final, train.take(held), timer.seconds)


def _held_out(rows: Rows, *, seed: tuple[int, ...]) -> np.ndarray:
    """Positions of about HELD_OUT of `rows`: whole patients, stratified by class (empty when impossible)."""
    return carve(rows.ids, rows.groups, rows.y, n=round(HELD_OUT * len(rows.y)), seed=seed)


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
