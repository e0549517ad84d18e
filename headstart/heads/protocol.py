"""The Head protocol: what one kind of head knows, and the plain data every kind's sweep reads and returns.

A head kind (logreg, linear, mlp, knn, or one you add) is one `HeadKind` subclass in one module, named once in
`heads.registry`. It knows its sweep grid, how to fit one config or a whole sweep, how its fitted estimator is
saved to and rebuilt from plain tensors (no pickle), and the torch module that computes its `predict_proba`
for an exported graph. The runner, cross-validation, persistence, `predict` and `export` ask the kind; none of
them names a head.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from headstart.errors import DataError
from headstart.tasks.core import Task


@dataclass
class Rows:
    """One split of one feature set: features, labels, sample ids and patient groups.

    Single-label: `y` (n,) class indices. Multi-label: `y` (n, L) 0/1 targets and `mask` (n, L), True where a
    label may be used: the training policy's targets on train, the scored (never uncertain) labels on val/test.
    """

    X: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    groups: np.ndarray
    views: np.ndarray | None = None  # (n, K, D) cached augmented views (heads --views on; heads.views)
    tta: np.ndarray | None = None  # (n, M, D) cached test-time views (heads --tta on)
    mask: np.ndarray | None = None  # multi-label (n, L) known labels; None: every label known

    def take(self, index: np.ndarray) -> Rows:
        return Rows(self.X[index], self.y[index], self.ids[index], self.groups[index],
                    None if self.views is None else self.views[index], None if self.tta is None else self.tta[index],
                    None if self.mask is None else self.mask[index])


@dataclass
class FitSettings:
    """What every fit of a sweep shares, passed as one object."""

    grid: Any  # heads.sweep.SweepGrid: the configs and the torch heads' epochs, batch size and patience
    class_weight: str | None  # "balanced" or None (see data.balance.class_weight_mode)
    n_classes: int = 0  # probability columns; derived from `task` when one is given
    device: Any = "cpu"  # where the torch heads train
    precision: str = "fp32"  # the torch heads' training steps, "fp32" or "bf16" (device.head_precision)
    task: Task | None = None  # what is asked; None = the single-label task of `n_classes` classes

    def __post_init__(self) -> None:
        if self.task is None:
            from headstart.tasks.factory import task_for_classes

            self.task = task_for_classes([str(k) for k in range(self.n_classes)])
        self.n_classes = self.task.n_outputs


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


def require(ok: bool, message: str) -> None:
    """A saved head's tensors must agree with its description; DataError (one line) when they do not."""
    if not ok:
        raise DataError(message)


class HeadKind:
    """One kind of head. Subclasses set the class attributes and implement `configs`, `fit_one`, `state`,
    `build` and `graph`; a kind whose sweep is cheaper fitted together overrides `fit_sweeps` too."""

    name: ClassVar[str]  # the --head value and the record's `head`
    estimator: ClassVar[type]  # the fitted estimator's class (sklearn-shaped: fit, predict_proba, classes_)
    tensors: ClassVar[tuple[str, ...]] = ()  # tensor names a saved head must hold (besides `classes`)
    seeded: ClassVar[bool] = False  # False: the fit ignores the seed, so one sweep serves every seed
    on_device: ClassVar[bool] = False  # True: trains and predicts on the torch device (timers sync it)

    def configs(self, grid: Any) -> list[dict]:
        """The hyperparameter dicts of this kind's sweep under `grid`, in a fixed order (ties go to the first)."""
        raise NotImplementedError

    def fit_one(self, params: dict, train: Rows, *, fit: FitSettings, seed: int,
                epochs: int | None = None) -> object:
        """One config fitted on all of `train` (for `epochs` where it trains in epochs; None: the grid's)."""
        raise NotImplementedError

    def fit_sweeps(self, train: Rows, val: Rows, *, fit: FitSettings, seeds: Sequence[int],
                   params: list[dict] | None = None,
                   stop_split: Callable[[Rows], np.ndarray] | None = None) -> list[list[Candidate]]:
        """Every config (`params`, default: the grid's) fitted on train and scored on val, one list per seed (a
        shared list when unseeded). `stop_split` gives the train positions a kind that stops early stops on
        instead of val (it then fits on the other train rows); kinds that do not stop early ignore it."""
        params = self.configs(fit.grid) if params is None else params

        def one(seed: int) -> list[Candidate]:
            fitted = [self.fit_one(p, train, fit=fit, seed=seed) for p in params]
            return [Candidate(p, full_proba(h, val.X, fit.n_classes), h) for p, h in zip(params, fitted)]

        if not self.seeded:
            return [one(seeds[0])] * len(seeds)
        return [one(seed) for seed in seeds]

    def record_hyper(self, cand: Candidate, fit: FitSettings) -> dict:
        """Training settings the record shows beside the selected config (epochs, batch size, ...)."""
        return {}

    def state(self, estimator: object, dtype: str) -> tuple[dict, dict]:
        """(tensors, JSON state) that rebuild the fitted estimator; `dtype` is the features' storage dtype."""
        raise NotImplementedError

    def build(self, params: dict, tensors: dict, state: dict, classes: np.ndarray) -> object:
        """The fitted estimator back from `state`'s output (raise DataError, one line, when they disagree)."""
        raise NotImplementedError

    def graph(self, estimator: object) -> Any:
        """The eval-mode torch module mapping (B, D) float32 features to `predict_proba`'s (B, C)."""
        raise NotImplementedError
