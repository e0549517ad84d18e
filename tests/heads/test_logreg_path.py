"""The logreg C path solved for every C at once: sklearn's own lbfgs accepts each solution as converged, and the
heads agree with tightly converged sklearn fits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from headstart.heads.logreg import fit_logreg_path
from headstart.heads.logreg_path import solve_logistic_path
from tests.heads.synthetic_cache import separable

CS = [1e-4, 1e-2, 1.0, 100.0]  # weak to strong fits, the path's hard end included (near-separable)


def _correlated(n: int = 300, dim: int = 24, seed: int = 0):
    """Blobs seen through a random mixing matrix: correlated features, an ill-conditioned Gram matrix, imbalance."""
    X, y = separable(n, dim, seed=seed, shift=0.9)
    X = X @ np.random.default_rng(seed).normal(size=(dim, dim)).astype(np.float32)
    keep = (y == 1) | (np.arange(n) % 3 == 0)  # about 1 : 3, like the Kaggle classes
    return X[keep], y[keep]


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_sklearn_accepts_every_solution_and_it_matches_a_tight_fit(class_weight):
    X, y = _correlated()
    heads = fit_logreg_path(X, y, CS, class_weight=class_weight)
    Xs = StandardScaler().fit_transform(X)
    for C, head in zip(CS, heads):
        model = head.pipeline_[-1]
        assert model.n_iter_[0] == 0, C  # sklearn's lbfgs, started at our solution, found nothing to do
        tight = LogisticRegression(C=C, class_weight=class_weight, tol=1e-10, max_iter=100_000).fit(Xs, y)
        np.testing.assert_allclose(head.predict_proba(X), tight.predict_proba(Xs), atol=2e-3)
        assert np.mean(head.predict(X) == tight.predict(Xs)) > 0.98


def test_solver_meets_the_gradient_rule_and_labels_need_not_be_01():
    X, y = _correlated(seed=3)
    Xs = StandardScaler().fit_transform(X).astype(np.float64)
    w = np.where(y == 1, 2.0, 0.5)
    W = solve_logistic_path(Xs, y, w, CS, tol=1e-6)
    # the gradient of sklearn's objective, mean weighted log-loss + ||coef||^2 / (2 C sum(w)), written out here
    for k, C in enumerate(CS):
        p = 1.0 / (1.0 + np.exp(-(Xs @ W[:-1, k] + W[-1, k])))
        r = w * (p - y) / w.sum()
        grad = np.append(Xs.T @ r + W[:-1, k] / (C * w.sum()), r.sum())
        assert np.abs(grad).max() <= 1e-6, C
    names = np.array(["NORMAL", "PNEUMONIA"])[y]
    heads = fit_logreg_path(X, names, [0.1])
    assert list(heads[0].classes_) == ["NORMAL", "PNEUMONIA"]
    assert heads[0].pipeline_[-1].n_iter_[0] == 0
    assert np.mean(heads[0].predict(X) == names) > 0.8


def test_multiclass_keeps_the_warm_started_sklearn_path():
    X, y = separable(240, 10, n_classes=3, seed=2)
    heads = fit_logreg_path(X, y, [0.01, 1.0])
    for C, head in zip([0.01, 1.0], heads):
        Xs = StandardScaler().fit_transform(X)
        cold = LogisticRegression(C=C, max_iter=1000).fit(Xs, y)
        np.testing.assert_allclose(head.predict_proba(X), cold.predict_proba(Xs), atol=2e-3)
