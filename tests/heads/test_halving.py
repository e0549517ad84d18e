"""Successive halving inside a batched sweep stops the worse heads by val loss, deterministically; seeds batched
in one loop equal seeds trained one by one."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from headstart.heads.batched import TorchHeadConfig, TrainSettings, train_batched, train_batched_seeds
from headstart.heads.halving import halving_survivors
from tests.heads.synthetic_cache import separable

SETTINGS = TrainSettings(epochs=14, batch_size=32, patience=50, class_weight="balanced", halving=(2, 5))
# mixed widths: the rule ranks heads across the per-width groups of one seed
CONFIGS = [TorchHeadConfig(lr=lr, weight_decay=1e-4, hidden=h, dropout=d)
           for lr in (3e-4, 3e-3, 3e-2) for h in (8, 24) for d in (0.0, 0.5)][:11]


def _data(seed: int = 4):
    X, y = separable(260, 10, seed=seed, shift=0.9)
    return X[:190], y[:190], X[190:], y[190:]


def _best_loss_at(history: list[dict], epoch: int, min_delta: float) -> float:
    """The best val loss a head held after `epoch`, by the trainer's rule (a drop smaller than min_delta is no
    improvement), recomputed from its history."""
    best = math.inf
    for row in history[:epoch]:
        if row["val_loss"] < best - min_delta:
            best = row["val_loss"]
    return best


def test_survivors_are_the_better_half_and_ties_go_to_the_earlier_head():
    loss = np.array([0.3, 0.1, 0.2, 0.1, 0.05])
    training = np.array([True, True, True, True, False])  # head 4 already stopped: neither ranked nor revived
    assert halving_survivors(loss, training).tolist() == [False, True, False, True, False]
    assert halving_survivors(np.full(3, 0.5), np.ones(3, bool)).tolist() == [True, True, False]  # ceil(3 / 2)
    assert halving_survivors(np.array([0.4]), np.array([True])).tolist() == [True]  # never stops the last head
    assert not halving_survivors(loss, np.zeros(5, bool)).any()


def test_halving_stops_the_worse_half_by_val_loss_at_each_rung():
    X, y, Xv, yv = _data()
    results = train_batched(X, y, Xv, yv, configs=CONFIGS, settings=SETTINGS, seed=3)
    training = list(range(len(CONFIGS)))  # patience 50: only the rule stops heads here
    for rung in SETTINGS.halving:
        halted = [k for k in training if results[k].halted_at == rung]
        kept = [k for k in training if k not in halted]
        assert len(kept) == math.ceil(len(training) / 2) and halted
        loss = {k: _best_loss_at(results[k].history, rung, SETTINGS.min_delta) for k in training}
        assert min(loss[k] for k in halted) >= max(loss[k] for k in kept), (rung, loss)
        for k in halted:  # stopped at the rung, frozen at its best weights so far
            assert len(results[k].history) == rung and results[k].best_epoch <= rung
        training = kept
    for k in training:
        assert results[k].halted_at is None and len(results[k].history) == SETTINGS.epochs
    # deterministic: the same seed stops the same heads at the same rungs
    again = train_batched(X, y, Xv, yv, configs=CONFIGS, settings=SETTINGS, seed=3)
    assert [r.halted_at for r in again] == [r.halted_at for r in results]


def test_a_survivor_equals_the_same_config_trained_alone():
    X, y, Xv, yv = _data()
    results = train_batched(X, y, Xv, yv, configs=CONFIGS, settings=SETTINGS, seed=3)
    alone_settings = dataclasses.replace(SETTINGS, halving=())
    for k in [k for k, r in enumerate(results) if r.halted_at is None]:
        (alone,) = train_batched(X, y, Xv, yv, configs=[CONFIGS[k]], settings=alone_settings, seed=3)
        assert alone.best_epoch == results[k].best_epoch
        np.testing.assert_allclose(alone.val_proba, results[k].val_proba, atol=1e-5)


@pytest.mark.parametrize("halving", [(), (3,)], ids=["no-halving", "halving"])
def test_seeds_batched_in_one_loop_equal_seeds_one_by_one(halving):
    X, y, Xv, yv = _data(seed=8)
    settings = dataclasses.replace(SETTINGS, epochs=8, patience=3, halving=halving)
    together = train_batched_seeds(X, y, Xv, yv, configs=CONFIGS, settings=settings, seeds=(5, 9))
    for seed, results in zip((5, 9), together):
        alone = train_batched(X, y, Xv, yv, configs=CONFIGS, settings=settings, seed=seed)
        for a, b in zip(results, alone):
            assert (a.best_epoch, a.halted_at, len(a.history)) == (b.best_epoch, b.halted_at, len(b.history))
            np.testing.assert_allclose(a.val_proba, b.val_proba, atol=1e-5)
    # not vacuous: the seeds differ, and with a rung each seed halved its own heads
    assert not np.allclose(together[0][0].val_proba, together[1][0].val_proba, atol=1e-4)
    if halving:
        for results in together:
            assert sum(r.halted_at == 3 for r in results) >= len(CONFIGS) // 4


def test_the_grid_halves_mlp_sweeps_only_and_the_default_grid_does():
    """`SweepGrid.mlp_halving` reaches the MLP sweep of `fit_sweeps`; a linear sweep on the same grid runs every
    config to the end (its cost is per step, which stopping heads would not cut)."""
    from headstart.heads.fitting import FitSettings, Rows, fit_sweeps
    from headstart.heads.sweep import get_sweep

    assert get_sweep("default").mlp_halving  # on by default, the setting issue 13's figures were measured with
    Xt, yt, Xv, yv = _data()
    rows = [Rows(X, y, np.arange(len(y)).astype(str), np.full(len(y), "")) for X, y in ((Xt, yt), (Xv, yv))]
    grid = dataclasses.replace(get_sweep("quick"), linear_lr=(1e-3, 1e-2, 3e-2), mlp_dropout=(0.0, 0.3, 0.5),
                               train=TrainSettings(epochs=4, batch_size=32, patience=50), mlp_halving=(1,))
    fit = FitSettings(grid=grid, class_weight=None, n_classes=2, device="cpu")
    (mlp,) = fit_sweeps("mlp", *rows, fit=fit, seeds=[0])
    assert sorted(len(c.history) for c in mlp) == [1, 4, 4]  # ceil(3 / 2) = 2 survive the rung at epoch 1
    (linear,) = fit_sweeps("linear", *rows, fit=fit, seeds=[0])
    assert [len(c.history) for c in linear] == [4, 4, 4]
