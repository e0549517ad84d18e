"""A sweep trained as one batched model equals each configuration trained alone."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from headstart.errors import ConfigError
from headstart.heads.batched import TorchHeadConfig, TrainSettings, train_batched
from headstart.heads.stacked import hash_uniform
from headstart.heads.torch_heads import LinearHead, MLPHead
from tests.heads.synthetic_cache import separable

SETTINGS = TrainSettings(epochs=25, batch_size=32, patience=4, class_weight="balanced")


def _alone(cfg: TorchHeadConfig, X, y, Xv, yv, seed: int):
    common = dict(lr=cfg.lr, weight_decay=cfg.weight_decay, epochs=SETTINGS.epochs, batch_size=SETTINGS.batch_size,
                  patience=SETTINGS.patience, class_weight=SETTINGS.class_weight, seed=seed)
    head = MLPHead(hidden=cfg.hidden, dropout=cfg.dropout, **common) if cfg.hidden else LinearHead(**common)
    return head.fit(X, y, X_val=Xv, y_val=yv)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_batched_equals_alone(kind):
    X, y = separable(240, 10, seed=4)
    X, y, Xv, yv = X[:180], y[:180], X[180:], y[180:]
    if kind == "linear":
        configs = [TorchHeadConfig(lr=lr, weight_decay=wd) for lr in (1e-3, 3e-2) for wd in (0.0, 1e-2)]
    else:  # mixed widths exercise the padding mask, mixed dropout the shared noise
        configs = [TorchHeadConfig(lr=lr, weight_decay=1e-4, hidden=h, dropout=d)
                   for lr in (1e-3, 3e-2) for h in (8, 32) for d in (0.0, 0.5)]
    batched = train_batched(X, y, Xv, yv, configs=configs, settings=SETTINGS, seed=7)
    stopped = set()
    for cfg, result in zip(configs, batched):
        alone = _alone(cfg, X, y, Xv, yv, seed=7)
        assert result.best_epoch == alone.best_epoch_
        assert len(result.history) == len(alone.history_)
        assert np.allclose(result.val_proba, alone.predict_proba(Xv), atol=1e-5)
        assert roc_auc_score(yv, result.val_proba[:, 1]) == pytest.approx(roc_auc_score(yv, alone.predict_proba(Xv)[:, 1]))
        stopped.add(len(result.history))
    assert len(stopped) > 1  # heads really stopped at different epochs inside one batch


def test_hyperparameters_matter_and_seed_reproduces():
    X, y = separable(200, 10, seed=5)
    configs = [TorchHeadConfig(lr=1e-4, weight_decay=0.0, hidden=16), TorchHeadConfig(lr=3e-2, weight_decay=0.0, hidden=16),
               TorchHeadConfig(lr=3e-2, weight_decay=0.0, hidden=16, dropout=0.5)]
    a = train_batched(X[:150], y[:150], X[150:], y[150:], configs=configs, settings=SETTINGS, seed=1)
    b = train_batched(X[:150], y[:150], X[150:], y[150:], configs=configs, settings=SETTINGS, seed=1)
    for ra, rb in zip(a, b):
        assert np.array_equal(ra.val_proba, rb.val_proba)
    assert not np.allclose(a[0].val_proba, a[1].val_proba, atol=1e-3)  # lr is per head
    assert not np.allclose(a[1].val_proba, a[2].val_proba, atol=1e-3)  # dropout is per head


def test_without_val_trains_all_epochs():
    X, y = separable(100, 6)
    (result,) = train_batched(X, y, configs=[TorchHeadConfig(lr=1e-2)], settings=SETTINGS, seed=0)
    assert result.val_proba is None and len(result.history) == SETTINGS.epochs == result.best_epoch


def test_mixing_linear_and_mlp_is_refused():
    X, y = separable(40, 4)
    with pytest.raises(ConfigError, match="one kind"):
        train_batched(X, y, configs=[TorchHeadConfig(), TorchHeadConfig(hidden=8)])


def test_dropout_noise_is_independent_of_width():
    narrow = hash_uniform(3, 11, 16, 8, device="cpu")
    wide = hash_uniform(3, 11, 16, 64, device="cpu")
    assert np.array_equal(narrow.numpy(), wide[:, :8].numpy())
    assert 0.0 <= float(wide.min()) and float(wide.max()) < 1.0 and abs(float(wide.mean()) - 0.5) < 0.05
    assert not np.array_equal(narrow.numpy(), hash_uniform(3, 12, 16, 8, device="cpu").numpy())
