"""The heads are scikit-learn estimators: clone, get/set_params, cross_val_score, and sane probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from headstart.heads.batched import TorchHeadConfig, TrainSettings, train_batched
from headstart.heads.knn import KNNHead, knn_sweep
from headstart.heads.logreg import LogRegHead, fit_logreg_path
from headstart.heads.torch_heads import LinearHead, MLPHead
from tests.heads.synthetic_cache import separable

HEADS = [
    LogRegHead(C=0.5, class_weight="balanced"),
    LinearHead(lr=3e-2, epochs=30, batch_size=32, seed=3),
    MLPHead(lr=1e-2, epochs=15, batch_size=64, hidden=16, dropout=0.2, seed=3),
    KNNHead(k=7, class_weight="balanced"),
]


@pytest.mark.parametrize("head", HEADS, ids=lambda h: type(h).__name__)
def test_sklearn_contract(head):
    X, y = separable(150, 8)
    params = head.get_params()
    twin = clone(head)
    assert twin.get_params() == params and twin is not head
    assert not any(name.endswith("_") for name in vars(twin))  # clone carries no fitted state
    twin.set_params(**params)
    scores = cross_val_score(head, X, y, cv=3, scoring="roc_auc")
    assert scores.shape == (3,) and scores.min() > 0.8, scores
    fitted = clone(head).fit(X, y)
    assert fitted is not None and list(fitted.classes_) == [0, 1]
    proba = fitted.predict_proba(X)
    assert proba.shape == (150, 2) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert set(np.unique(fitted.predict(X))) <= {0, 1}


def test_string_labels_and_multiclass():
    X, y = separable(120, 6, n_classes=3)
    names = np.array(["a", "b", "c"])[y]
    for head in (LogRegHead(), LinearHead(epochs=10, lr=1e-2), KNNHead(k=5)):
        head.fit(X, names)
        assert list(head.classes_) == ["a", "b", "c"]
        assert head.predict_proba(X).shape == (120, 3)
        assert (head.predict(X) == names).mean() > 0.6


@pytest.mark.parametrize("C", [1e-3, 0.1, 10.0])
def test_logreg_matches_plain_sklearn(C):
    X, y = separable(300, 20, shift=0.8, seed=1)
    Xt, yt, Xv, yv = X[:200], y[:200], X[200:], y[200:]
    plain = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000)).fit(Xt, yt)
    ours = LogRegHead(C=C).fit(Xt, yt)
    ref = roc_auc_score(yv, plain.predict_proba(Xv)[:, 1])
    assert abs(roc_auc_score(yv, ours.predict_proba(Xv)[:, 1]) - ref) < 0.005
    path = fit_logreg_path(Xt, yt, [100.0, C, 1e-4])  # warm-started, fitted in ascending C
    assert [h.C for h in path] == [100.0, C, 1e-4]
    path_head = path[1]
    assert abs(roc_auc_score(yv, path_head.predict_proba(Xv)[:, 1]) - ref) < 0.005


def test_knn_is_cosine():
    train = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    head = KNNHead(k=1).fit(train, [0, 1])
    # far along the first axis but at a small angle to it: Euclidean would pick class 1's point, cosine class 0
    query = np.array([[10.0, 1.0], [0.1, 3.0]], dtype=np.float32)
    assert head.predict(query).tolist() == [0, 1]
    assert np.allclose(KNNHead(k=1).fit(train * 100, [0, 1]).predict_proba(query), head.predict_proba(query))


def test_knn_balanced_votes_favour_minority():
    train = np.array([[1, 0.1], [1, 0.2], [1, 0.3], [1, -0.1]], dtype=np.float32)
    y = [0, 0, 0, 1]
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    plain = KNNHead(k=4, weights="uniform").fit(train, y).predict_proba(query)[0]
    balanced = KNNHead(k=4, weights="uniform", class_weight="balanced").fit(train, y).predict_proba(query)[0]
    assert plain[1] == pytest.approx(0.25) and balanced[1] == pytest.approx(0.5)


def test_torch_head_history_and_early_stopping():
    X, y = separable(200, 8, seed=2)
    head = LinearHead(lr=3e-2, epochs=200, batch_size=32, patience=3).fit(X[:150], y[:150], X_val=X[150:], y_val=y[150:])
    assert 1 <= head.best_epoch_ < len(head.history_) < 200  # stopped early, kept an earlier epoch
    first = head.history_[0]
    assert set(first) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"}
    best = min(h["val_loss"] for h in head.history_)
    assert head.history_[head.best_epoch_ - 1]["val_loss"] == pytest.approx(best, abs=1e-4)


def test_logreg_is_the_plain_sklearn_pipeline():
    # equal up to rounding: the scaler's moments are summed in blocks (heads.scaling), not in one numpy call
    X, y = separable(200, 10, shift=0.8, seed=3)
    plain = make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=1000)).fit(X, y)
    np.testing.assert_allclose(LogRegHead(C=0.3).fit(X, y).predict_proba(X), plain.predict_proba(X), rtol=0, atol=1e-6)


def _sweep_heads(X, y, Xv, yv):
    """(head adopted from a sweep, the same config fitted alone) for every head kind."""
    settings = TrainSettings(epochs=12, batch_size=32, patience=3)
    configs = {"linear": TorchHeadConfig(lr=3e-2, weight_decay=1e-4), "mlp": TorchHeadConfig(lr=1e-2, hidden=16)}
    pairs = []
    for cls, cfg in ((LinearHead, configs["linear"]), (MLPHead, configs["mlp"])):
        (result,) = train_batched(X, y, Xv, yv, configs=[cfg], settings=settings, seed=2)
        adopted = cls._from_batched(result, np.array([0, 1]), settings=settings, seed=2)
        alone = clone(adopted).fit(X, y, X_val=Xv, y_val=yv)
        pairs.append((adopted, alone))
    (path_head,) = fit_logreg_path(X, y, [0.2])
    pairs.append((path_head, LogRegHead(C=0.2).fit(X, y)))
    _, (knn_head, _) = knn_sweep(X, y, Xv, [15, 5])
    pairs.append((knn_head, KNNHead(k=5).fit(X, y)))
    return pairs


def test_heads_from_a_sweep_are_the_heads_fit_returns():
    X, y = separable(200, 8, seed=6)
    X, y, Xv, yv = X[:150], y[:150], X[150:], y[150:]
    for adopted, alone in _sweep_heads(X, y, Xv, yv):
        assert adopted.get_params() == alone.get_params()
        assert sorted(vars(adopted)) == sorted(vars(alone))  # the same fitted state, set by the class itself
        # The logreg path is solved for every C at once (heads.logreg_path) and stops, like sklearn's lbfgs, at
        # max |gradient| <= 1e-4; it agrees with a cold fit to that tolerance (tests/heads/test_logreg_path.py
        # checks sklearn's own solver accepts it), not to float rounding as the other heads do.
        atol = 1e-3 if isinstance(adopted, LogRegHead) else 1e-6
        np.testing.assert_allclose(adopted.predict_proba(Xv), alone.predict_proba(Xv), atol=atol)


def test_heads_from_a_sweep_clone_and_cross_validate():
    X, y = separable(150, 8, seed=7, shift=2.5)
    for adopted, _ in _sweep_heads(X[:120], y[:120], X[120:], y[120:]):
        twin = clone(adopted)
        assert not any(name.endswith("_") for name in vars(twin))
        scores = cross_val_score(adopted, X, y, cv=3, scoring="roc_auc")
        assert scores.shape == (3,) and scores.min() > 0.8, (type(adopted).__name__, scores)


def test_from_batched_refuses_the_other_kind():
    X, y = separable(60, 4)
    (result,) = train_batched(X, y, configs=[TorchHeadConfig(hidden=8)], settings=TrainSettings(epochs=1))
    with pytest.raises(ValueError, match="LinearHead cannot adopt a head with hidden=8; use MLPHead"):
        LinearHead._from_batched(result, np.array([0, 1]), settings=TrainSettings(epochs=1), seed=0)
