"""One-vs-rest logistic regression for a multi-label task: every finding x every C solved in one batched path.

Each finding is sklearn's binary L2 logistic regression on its own known rows (a masked label has sample weight
0, which is the same objective as leaving the row out): the weighted mean log-loss plus ||w||^2 / (2 C sum(w)),
an unpenalised intercept, stopped at max |gradient| <= tol. Looping sklearn over 14 findings x 5 Cs costs 70
fits, each hundreds of passes over the rows. Here the findings are the columns of one problem solved by
`heads.logreg_path.lbfgs_columns`: each pass over the rows is one (n, d) x (d, L) product, done in row
blocks so the (n, columns) temporaries never exceed a few MiB; the Cs go in ascending order, each warm-started
from the last (`solve_multilabel_path`). The preconditioner is the unweighted Gram
matrix's eigendecomposition (the exact Hessian at w = 0 when no label is masked and weights are uniform), shared
by every column; it only steers the search, the objective of each column is exact.

A finding with one class among its known train rows is not fitted: its coefficients are 0 and its intercept
NaN, so its probabilities are NaN (reported as null with a reason), in `predict_proba` and in the exported graph.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from headstart.heads.logreg_path import CURVATURE_AT_ZERO, GRAM_ROWS, gram_eigen, lbfgs_columns
from headstart.tasks.core import sigmoid
from headstart.tasks.multilabel import class_presence


class SigmoidLinear(ClassifierMixin, BaseEstimator):
    """The fitted linear part of a multi-label logreg: one sigmoid per finding, (N, D) -> (N, L) probabilities."""

    def __init__(self, *, C: float = 1.0, class_weight: str | None = None, max_iter: int = 1000) -> None:
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter

    def fit(self, X, y, mask=None) -> SigmoidLinear:
        """One-vs-rest on (already standardised) X, each finding on its `mask`ed rows."""
        (model,) = fit_multilabel_path(np.asarray(X, dtype=np.float32), y, mask, [self.C],
                                       class_weight=self.class_weight, tol=1e-4, max_iter=self.max_iter)
        return self.adopt(model.coef_, model.intercept_)

    def adopt(self, coef: np.ndarray, intercept: np.ndarray, n_iter=None) -> SigmoidLinear:
        self.coef_, self.intercept_ = np.asarray(coef, dtype=np.float64), np.asarray(intercept, dtype=np.float64)
        self.classes_ = np.arange(self.coef_.shape[0])
        self.n_features_in_ = self.coef_.shape[1]
        self.n_iter_ = np.asarray([0] if n_iter is None else n_iter, dtype=np.int32)
        return self

    def decision_function(self, X) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_

    def predict_proba(self, X) -> np.ndarray:
        return sigmoid(self.decision_function(X))

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X) >= 0.5).astype(np.int64)


def finding_weights(y: np.ndarray, mask: np.ndarray | None, class_weight: str | None) -> np.ndarray:
    """(n, L) sample weights: 0 on masked labels; under "balanced", sklearn's rule per finding on its known rows
    (n_known / (2 n_class)); else 1."""
    y = np.asarray(y)
    known = np.ones(y.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    weights = known.astype(np.float64)
    if class_weight == "balanced":
        n_known = known.sum(axis=0)
        n_pos = ((y == 1) & known).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            w_pos = np.where(n_pos > 0, n_known / (2.0 * np.maximum(n_pos, 1)), 0.0)
            w_neg = np.where(n_known > n_pos, n_known / (2.0 * np.maximum(n_known - n_pos, 1)), 0.0)
        weights *= np.where(y == 1, w_pos, w_neg)
    return weights


def solve_multilabel_path(X: np.ndarray, y: np.ndarray, weights: np.ndarray, Cs, *, tol: float = 1e-4,
                          max_iter: int = 1000, history: int = 10) -> np.ndarray:
    """Coefficients (len(Cs), L, d + 1), intercept last, of a binary L2 logistic regression per finding (column
    of y (n, L) in {0, 1}, with sample weights (n, L)) at each C; each (finding, C) stops on its own.

    The Cs are solved in ascending order, every finding of one C at once, each C warm-started from the previous
    C's solution: along the path the optimum moves little, so a strongly regularised start cuts the passes of
    the weakly regularised columns several-fold, and 14 columns per pass keep the product as efficient as the
    binary sweep's."""
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    Cs = np.asarray(Cs, dtype=np.float64)
    problem = _Findings(X, np.asarray(y, dtype=np.float32), np.asarray(weights, dtype=np.float64))
    out = np.zeros((len(Cs), y.shape[1], X.shape[1] + 1))
    W = None
    for k in np.argsort(Cs, kind="stable"):
        problem.set_C(Cs[k])
        W = lbfgs_columns(problem, X.shape[1] + 1, tol=tol, max_iter=max_iter, history=history, start=W)
        out[k] = W.T
    return out


def fit_multilabel_path(Xs: np.ndarray, y: np.ndarray, mask: np.ndarray | None, Cs, *, class_weight: str | None,
                        tol: float, max_iter: int) -> list[SigmoidLinear]:
    """One fitted `SigmoidLinear` per C on standardised features Xs; untrained findings have NaN intercepts."""
    pos, neg = class_presence(y, mask)
    fitted = np.flatnonzero(pos & neg)
    weights = finding_weights(y, mask, class_weight)
    L, d = y.shape[1], Xs.shape[1]
    solved = np.zeros((len(Cs), L, d + 1))
    solved[:, :, -1] = np.nan
    if len(fitted):
        solved[:, fitted] = solve_multilabel_path(Xs, np.asarray(y)[:, fitted], weights[:, fitted], Cs, tol=tol,
                                                  max_iter=max_iter)
    return [SigmoidLinear(C=float(C), class_weight=class_weight, max_iter=max_iter).adopt(solved[k, :, :-1], solved[k, :, -1]) for k, C in enumerate(Cs)]


class _Findings:
    """Loss, gradient and preconditioner of one C's L findings: column j is finding j, over the rows its
    weights keep (`set_C` moves to another C)."""

    def __init__(self, X: np.ndarray, y: np.ndarray, weights: np.ndarray) -> None:
        self.X, self.y = X, y
        self.sw_sum = weights.sum(axis=0)
        self.share = weights / np.where(self.sw_sum > 0, self.sw_sum, 1.0)  # (n, L) row shares, float64
        eigenvalues, self.V = gram_eigen(X, np.ones(len(X)))
        self.curvature = CURVATURE_AT_ZERO * eigenvalues[:, None]
        self.lam = np.zeros(y.shape[1])

    def set_C(self, C: float) -> None:
        self.lam = 1.0 / (C * self.sw_sum)

    def loss_grad(self, W: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        coef, b = W[:-1].astype(self.X.dtype), W[-1]
        loss = np.zeros(len(cols))
        grad = np.zeros_like(W)
        for start in range(0, len(self.X), GRAM_ROWS):
            block = self.X[start:start + GRAM_ROWS]
            z = (block @ coef).astype(np.float64) + b  # X's dtype: never a cast copy of X (as the binary path)
            y, share = self.y[start:start + GRAM_ROWS][:, cols], self.share[start:start + GRAM_ROWS][:, cols]
            e = np.exp(-np.abs(z))  # one exp serves the softplus and the sigmoid (logaddexp + expit cost 2x)
            loss += (share * (np.maximum(z, 0.0) + np.log1p(e) - y * z)).sum(axis=0)
            residual = share * (np.where(z >= 0, 1.0, e) / (1.0 + e) - y)
            grad[:-1] += (block.T @ residual.astype(self.X.dtype)).astype(np.float64)
            grad[-1] += residual.sum(axis=0)
        lam = self.lam[cols]
        loss += 0.5 * lam * (W[:-1] ** 2).sum(axis=0)
        grad[:-1] += lam * W[:-1]
        return loss, grad

    def precondition(self, q: np.ndarray, cols: np.ndarray) -> np.ndarray:
        out = np.empty_like(q)
        out[:-1] = self.V @ ((self.V.T @ q[:-1]) / (self.curvature + self.lam[cols]))
        out[-1] = q[-1] / CURVATURE_AT_ZERO
        return out
