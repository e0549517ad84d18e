"""The logreg C path solved for every C at once, binary and multinomial: sklearn's own lbfgs accepts each solution
as converged, and the heads agree with tightly converged sklearn fits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from headstart.heads.logreg import fit_logreg_path
from headstart.heads.logreg_path import solve_logistic_path
from headstart.heads.logreg_softmax import solve_multinomial_path
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


def _three_class(n: int = 360, dim: int = 16, seed: int = 0):
    """Three overlapping, imbalanced classes (about 2 : 1 : 1, like NORMAL / BACTERIA / VIRUS) through a random
    mixing matrix, named by strings so the class order is sklearn's sorted one."""
    X, y = separable(n, dim, n_classes=4, seed=seed, shift=1.2)
    y = np.minimum(y, 2)  # classes 2 and 3 merge: the largest class is twice each other
    X = X @ np.random.default_rng(seed).normal(size=(dim, dim)).astype(np.float32)
    return X, np.array(["virus", "bacteria", "normal"])[y]


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_multinomial_path_matches_sklearn_multinomial(class_weight):
    X, y = _three_class()
    heads = fit_logreg_path(X, y, CS, class_weight=class_weight)
    Xs = StandardScaler().fit_transform(X)
    for C, head in zip(CS, heads):
        model = head.pipeline_[-1]
        assert model.coef_.shape == (3, X.shape[1]), C  # one row per class: the multinomial (softmax) model
        assert model.n_iter_[0] == 0, C  # sklearn's lbfgs, started at the batched solution, found nothing to do
        tight = LogisticRegression(C=C, class_weight=class_weight, tol=1e-10, max_iter=100_000).fit(Xs, y)
        plain = LogisticRegression(C=C, class_weight=class_weight, max_iter=1000).fit(Xs, y)  # sklearn's tol 1e-4
        assert list(head.classes_) == list(tight.classes_) == ["bacteria", "normal", "virus"]
        ours = np.abs(head.predict_proba(X) - tight.predict_proba(Xs)).max()
        theirs = np.abs(plain.predict_proba(Xs) - tight.predict_proba(Xs)).max()
        # at tol 1e-4 a weakly regularised fit (C = 100) is a few 1e-3 off the exact optimum, sklearn's own too:
        # the batched solution must be as close to it as sklearn's default fit is, and close in absolute terms
        assert ours <= max(theirs, 1e-3) + 5e-4 and ours < 5e-3, (C, ours, theirs)
        top2 = np.sort(tight.predict_proba(Xs), axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 1e-2  # a near-tie (strong C's near-uniform rows) may flip either way
        assert clear.sum() > 20 and np.array_equal(head.predict(X)[clear], tight.predict(Xs)[clear]), C


def test_multinomial_solver_meets_the_gradient_rule():
    X, names = _three_class(seed=4)
    y = np.searchsorted(np.unique(names), names)
    Xs = StandardScaler().fit_transform(X).astype(np.float64)
    w = np.where(y == 0, 0.5, 2.0)
    solved = solve_multinomial_path(Xs, y, w, CS, n_classes=3, tol=1e-6)
    assert solved.shape == (len(CS), 3, X.shape[1] + 1)
    onehot = np.eye(3)[y]
    # the gradient of sklearn's multinomial objective, mean weighted cross-entropy + ||coef||^2 / (2 C sum(w)),
    # written out here
    for k, C in enumerate(CS):
        coef, intercept = solved[k, :, :-1], solved[k, :, -1]
        z = Xs @ coef.T + intercept
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        r = w[:, None] * (p - onehot) / w.sum()
        grad = np.hstack([r.T @ Xs + coef / (C * w.sum()), r.sum(axis=0)[:, None]])
        assert np.abs(grad).max() <= 1e-6, C
