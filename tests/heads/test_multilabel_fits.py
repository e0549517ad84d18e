"""The multi-label fits themselves: one-vs-rest logreg equals sklearn per finding on its own known rows; a masked
label never moves a torch head or a kNN vote; balanced weights per finding."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from headstart.data.balance import pos_weights
from headstart.heads.batched import TorchHeadConfig, TrainSettings, train_batched_seeds
from headstart.heads.knn import KNNHead
from headstart.heads.logreg import fit_logreg_path
from headstart.heads.scaling import fit_scaler, scaled_copy


def _data(n=300, dim=8, L=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, dim)).astype(np.float32)
    y = (X[:, :L] + rng.normal(size=(n, L)) > 0.3).astype(np.float32)
    mask = rng.random((n, L)) > 0.2
    return X, y, mask


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_logreg_is_sklearn_per_finding_on_its_known_rows(class_weight):
    X, y, mask = _data()
    Cs = [0.01, 1.0, 100.0]
    heads = fit_logreg_path(X, y, Cs, class_weight=class_weight, mask=mask)
    scaler = fit_scaler(X)
    Xs = scaled_copy(X, scaler)
    for C, head in zip(Cs, heads):
        model = head.pipeline_[-1]
        for j in range(y.shape[1]):
            rows = mask[:, j]
            ref = LogisticRegression(C=C, class_weight=class_weight, max_iter=5000, tol=1e-8).fit(Xs[rows], y[rows, j])
            np.testing.assert_allclose(model.coef_[j], ref.coef_[0], atol=2e-3 * max(1.0, np.abs(ref.coef_).max()))
            np.testing.assert_allclose(model.intercept_[j], ref.intercept_[0], atol=2e-3)


def test_masked_labels_never_train_a_torch_head():
    X, y, mask = _data()
    flipped = np.where(mask, y, 1.0 - y)  # change every masked label: nothing may move
    settings = TrainSettings(epochs=3, batch_size=64, patience=5, class_weight="balanced")
    configs = [TorchHeadConfig(lr=1e-2), TorchHeadConfig(lr=1e-2, hidden=16)]
    runs = [train_batched_seeds(X, labels, X[:60], y[:60], configs=configs[:1], settings=settings, n_classes=3,
                                mask_train=mask, mask_val=mask[:60])[0][0] for labels in (y, flipped)]
    np.testing.assert_allclose(runs[0].params["W"].numpy(), runs[1].params["W"].numpy(), atol=1e-6)
    assert runs[0].link == "sigmoid" and runs[0].val_proba.shape == (60, 3)
    mlp = train_batched_seeds(X, y, X[:60], y[:60], configs=configs[1:], settings=settings, n_classes=3,
                              mask_train=mask, mask_val=mask[:60])[0][0]
    assert np.isfinite(mlp.val_proba).all() and mlp.params["W2"].shape == (16, 3)


def test_one_class_finding_is_nan_in_torch_heads():
    X, y, mask = _data()
    y[:, 2] = 0.0
    (result,) = train_batched_seeds(X, y, X[:60], y[:60], configs=[TorchHeadConfig()], n_classes=3,
                                    settings=TrainSettings(epochs=2), mask_train=mask)[0]
    assert np.isnan(result.val_proba[:, 2]).all() and np.isfinite(result.val_proba[:, :2]).all()


def test_masked_labels_never_vote_in_knn():
    X, y, mask = _data()
    flipped = np.where(mask, y, 1.0 - y)
    a = KNNHead(k=7, class_weight="balanced").fit(X, y, mask=mask).predict_proba(X[:40])
    b = KNNHead(k=7, class_weight="balanced").fit(X, flipped, mask=mask).predict_proba(X[:40])
    np.testing.assert_array_equal(a, b)
    assert a.shape == (40, 3) and ((a >= 0) & (a <= 1)).all()
    # every label known: the uniform vote is the neighbours' share of positives
    plain = KNNHead(k=5, weights="uniform").fit(X, y).predict_proba(X[:1])
    from headstart.heads.knn import neighbours
    _, idx = neighbours(KNNHead().fit(X, y).train_, X[:1], k=5)
    np.testing.assert_allclose(plain[0], y[idx[0]].mean(axis=0), atol=1e-6)


def test_pos_weight_is_negatives_over_positives_per_finding():
    y = np.array([[1, 0, 1], [0, 0, 1], [0, 1, 1], [0, 0, 1]], dtype=float)
    mask = np.ones_like(y, dtype=bool)
    mask[1, 0] = False
    np.testing.assert_allclose(pos_weights(y, mask, "balanced"), [2.0, 3.0, 1.0])  # last: no negative -> 1
    np.testing.assert_allclose(pos_weights(y, mask, None), [1.0, 1.0, 1.0])
