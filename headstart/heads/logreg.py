"""Logistic regression on features standardised on train: the strong, boring baseline every sweep needs.

`LogRegKind` is its head kind (heads.protocol): the C grid, every C solved at once (binary and multinomial),
tensors, graph.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_sample_weight

from headstart.data.balance import class_weight_mode
from headstart.heads.logreg_multilabel import SigmoidLinear, fit_multilabel_path
from headstart.heads.logreg_path import solve_logistic_path
from headstart.heads.logreg_softmax import solve_multinomial_path
from headstart.heads.protocol import Candidate, HeadKind, full_proba, require
from headstart.heads.scaling import fit_scaler, scaled_copy


class LogRegHead(ClassifierMixin, BaseEstimator):
    """`make_pipeline(StandardScaler(), LogisticRegression(lbfgs, L2))`, the scaler fitted on train."""

    def __init__(self, *, C: float = 1.0, class_weight: str | None = None, max_iter: int = 1000) -> None:
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter

    def fit(self, X, y, *, mask=None):
        """Fit on (X, y); a multi-label y (N, L) of 0/1 fits one-vs-rest per finding on its `mask`ed rows."""
        if np.ndim(y) == 2:
            (fitted,) = fit_logreg_path(X, y, [self.C], class_weight=self.class_weight, max_iter=self.max_iter,
                                        mask=mask)
            self._adopt(fitted.pipeline_)
            return self
        X = np.asarray(X, dtype=np.float32)
        scaler = fit_scaler(X)  # blocked: sklearn's own fit would peak at 2.25 copies of X (heads.scaling)
        model = _logistic(self.C, self.class_weight, self.max_iter).fit(scaled_copy(X, scaler), y)
        self._adopt(make_pipeline(scaler, model))
        return self

    @classmethod
    def _from_fitted(cls, pipeline: Pipeline, *, C: float, class_weight: str | None, max_iter: int) -> LogRegHead:
        """The head `fit` would return, around a scaler + logistic pipeline already fitted with these
        hyperparameters (`fit_logreg_path` fits a whole C path at once)."""
        head = cls(C=C, class_weight=class_weight, max_iter=max_iter)
        head._adopt(pipeline)
        return head

    def _adopt(self, pipeline: Pipeline) -> None:
        self.pipeline_ = pipeline
        self.classes_ = pipeline.classes_
        self.n_features_in_ = pipeline.n_features_in_

    def predict_proba(self, X) -> np.ndarray:
        return self.pipeline_.predict_proba(np.asarray(X, dtype=np.float32))

    def predict(self, X) -> np.ndarray:
        if isinstance(self.pipeline_[-1], SigmoidLinear):
            return self.pipeline_.predict(np.asarray(X, dtype=np.float32))
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def fit_logreg_path(X, y, Cs, *, class_weight: str | None = None, max_iter: int = 1000,
                    mask: np.ndarray | None = None) -> list[LogRegHead]:
    """Fit one `LogRegHead` per C; every head shares the one scaler fitted on X. Returns heads in the order of Cs.

    Every C is solved at once (one pass over the rows serves every C): binary by `heads.logreg_path`,
    multi-class (multinomial) by `heads.logreg_softmax`. Each solution is handed to sklearn's lbfgs as its warm
    start, which confirms it or finishes the job, so each head is a plain sklearn fit. The L2 objective is
    strictly convex, so the heads are the optimum a cold fit reaches, to sklearn's tolerance.
    Multi-label (y (N, L) 0/1, `mask` (N, L) known labels): one-vs-rest, every finding x C at once
    (`heads.logreg_multilabel`; its solution is final, 70 sklearn confirmations would cost more than the path).
    """
    X = np.asarray(X, dtype=np.float32)
    scaler = fit_scaler(X)
    Xs = scaled_copy(X, scaler)
    Cs = [float(c) for c in Cs]
    tol = _logistic(1.0, None, 1).tol
    if np.ndim(y) == 2:
        models = fit_multilabel_path(Xs, y, mask, Cs, class_weight=class_weight_mode(class_weight), tol=tol,
                                     max_iter=max_iter)
        return [LogRegHead._from_fitted(make_pipeline(scaler, m), C=C, class_weight=class_weight, max_iter=max_iter)
                for C, m in zip(Cs, models)]
    classes = np.unique(y)
    weights = compute_sample_weight(class_weight_mode(class_weight), y)
    if len(classes) == 2:
        solved = solve_logistic_path(Xs, np.asarray(y) == classes[1], weights, Cs, tol=tol, max_iter=max_iter)
        start = {C: (solved[None, :-1, k], solved[-1:, k]) for k, C in enumerate(Cs)}
    else:
        codes = np.searchsorted(classes, y)
        solved = solve_multinomial_path(Xs, codes, weights, Cs, n_classes=len(classes), tol=tol, max_iter=max_iter)
        start = {C: (solved[k, :, :-1], solved[k, :, -1]) for k, C in enumerate(Cs)}
    fitted: dict[float, LogRegHead] = {}
    for C in set(Cs):
        model = _logistic(C, class_weight, max_iter)
        model.warm_start = True
        model.coef_, model.intercept_ = start[C][0].copy(), start[C][1].copy()
        model.fit(Xs, y)
        model.warm_start = False
        fitted[C] = LogRegHead._from_fitted(make_pipeline(scaler, model), C=C, class_weight=class_weight,
                                            max_iter=max_iter)
    return [fitted[c] for c in Cs]


def _logistic(C: float, class_weight: str | None, max_iter: int) -> LogisticRegression:
    return _QuietLogistic(C=C, class_weight=class_weight_mode(class_weight), max_iter=max_iter, solver="lbfgs")


class _QuietLogistic(LogisticRegression):
    """lbfgs that has not fully converged at max_iter is still a usable fit; the sweep would otherwise print
    one ConvergenceWarning per weakly regularised C."""

    def fit(self, X, y, sample_weight=None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return super().fit(X, y, sample_weight=sample_weight)


class LogRegKind(HeadKind):
    """The logreg head kind: a sweep over C is one batched path (`fit_logreg_path`), shared by every seed."""

    name = "logreg"
    estimator = LogRegHead
    tensors = ("scaler_mean", "scaler_scale", "scaler_var", "coef", "intercept")

    def configs(self, grid) -> list[dict]:
        return [{"C": float(c)} for c in grid.logreg_C]

    def fit_one(self, params, train, *, fit, seed, epochs=None) -> LogRegHead:
        return LogRegHead(C=params["C"], class_weight=fit.class_weight).fit(train.X, train.y, mask=train.mask)

    def fit_sweeps(self, train, val, *, fit, seeds, params=None, stop_split=None) -> list[list[Candidate]]:
        params = self.configs(fit.grid) if params is None else params
        fitted = fit_logreg_path(train.X, train.y, [p["C"] for p in params], class_weight=fit.class_weight,
                                 mask=train.mask)
        return [[Candidate(p, full_proba(h, val.X, fit.n_classes), h) for p, h in zip(params, fitted)]] * len(seeds)

    def state(self, head: LogRegHead, dtype: str) -> tuple[dict, dict]:
        scaler, model = head.pipeline_[0], head.pipeline_[-1]
        tensors = {"scaler_mean": scaler.mean_, "scaler_scale": scaler.scale_, "scaler_var": scaler.var_,
                   "coef": model.coef_, "intercept": model.intercept_}
        state = {"n_samples_seen": int(np.max(scaler.n_samples_seen_)), "n_iter": np.ravel(model.n_iter_).tolist()}
        return tensors, {**state, "link": "sigmoid"} if isinstance(model, SigmoidLinear) else state

    def build(self, params: dict, t: dict, state: dict, classes: np.ndarray) -> LogRegHead:
        scaler = StandardScaler()
        scaler.mean_, scaler.scale_, scaler.var_ = t["scaler_mean"], t["scaler_scale"], t["scaler_var"]
        scaler.n_features_in_, scaler.n_samples_seen_ = len(t["scaler_mean"]), state.get("n_samples_seen", 0)
        multilabel = state.get("link") == "sigmoid"
        if multilabel:  # one-vs-rest: one sigmoid per finding
            model = SigmoidLinear(C=params["C"]).adopt(t["coef"], t["intercept"], state.get("n_iter"))
        else:
            model = _QuietLogistic(C=params["C"], max_iter=params["max_iter"])
            model.coef_, model.intercept_, model.classes_ = t["coef"], t["intercept"], classes
            model.n_features_in_ = t["coef"].shape[1]
            model.n_iter_ = np.asarray(state.get("n_iter", [0]), dtype=np.int32)
        require(t["coef"].shape[0] == (1 if len(classes) == 2 and not multilabel else len(classes)) and
                len(t["intercept"]) == t["coef"].shape[0] and len(t["scaler_scale"]) == t["coef"].shape[1],
                f"coef {t['coef'].shape} does not fit {len(classes)} classes and {len(t['scaler_mean'])} features")
        return LogRegHead._from_fitted(make_pipeline(scaler, model), **params)

    def graph(self, head: LogRegHead):
        from headstart.heads.graph import LogRegGraph

        scaler, model = head.pipeline_[0], head.pipeline_[-1]
        return LogRegGraph(scaler.mean_, scaler.scale_, model.coef_, model.intercept_,
                           sigmoid=isinstance(model, SigmoidLinear))
