"""Logistic regression on features standardised on train: the strong, boring baseline every sweep needs."""

from __future__ import annotations

import copy
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler


class LogRegHead(ClassifierMixin, BaseEstimator):
    """StandardScaler (fitted on train) + scikit-learn LogisticRegression (lbfgs, L2)."""

    def __init__(self, *, C: float = 1.0, class_weight: str | None = None, max_iter: int = 1000) -> None:
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter

    def fit(self, X, y):
        X = np.asarray(X, dtype=np.float32)
        self.scaler_ = StandardScaler().fit(X)
        self.model_ = _logistic(self.C, self.class_weight, self.max_iter).fit(self.scaler_.transform(X), y)
        self._copy_fitted()
        return self

    def _copy_fitted(self) -> None:
        self.classes_ = self.model_.classes_
        self.n_features_in_ = self.scaler_.n_features_in_

    def predict_proba(self, X) -> np.ndarray:
        return self.model_.predict_proba(self.scaler_.transform(np.asarray(X, dtype=np.float32)))

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def fit_logreg_path(X, y, Cs, *, class_weight: str | None = None, max_iter: int = 1000) -> list[LogRegHead]:
    """Fit one `LogRegHead` per C, warm-starting each from the previous C in ascending order.

    The L2 objective is strictly convex, so a warm start reaches the same optimum as a cold fit, in a
    fraction of the lbfgs iterations (weakly regularised fits on separable features are the slow ones).
    Returns heads in the order of `Cs`.
    """
    X = np.asarray(X, dtype=np.float32)
    scaler = StandardScaler().fit(X)
    Xs = scaler.transform(X)
    model = _logistic(1.0, class_weight, max_iter)
    model.warm_start = True
    fitted: dict[float, LogRegHead] = {}
    for C in sorted(set(float(c) for c in Cs)):
        model.C = C
        model.fit(Xs, y)
        head = LogRegHead(C=C, class_weight=class_weight, max_iter=max_iter)
        head.scaler_, head.model_ = scaler, copy.deepcopy(model)
        head.model_.warm_start = False
        head._copy_fitted()
        fitted[C] = head
    return [fitted[float(c)] for c in Cs]


def _logistic(C: float, class_weight: str | None, max_iter: int) -> LogisticRegression:
    return _QuietLogistic(C=C, class_weight=_sk_class_weight(class_weight), max_iter=max_iter, solver="lbfgs")


def _sk_class_weight(mode: str | None) -> str | None:
    return None if mode in (None, "none") else mode


class _QuietLogistic(LogisticRegression):
    """lbfgs that has not fully converged at max_iter is still a usable fit; the sweep would otherwise print
    one ConvergenceWarning per weakly regularised C."""

    def fit(self, X, y, sample_weight=None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return super().fit(X, y, sample_weight=sample_weight)
