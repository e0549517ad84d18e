"""The head registry: every built-in name maps to its kind, the kind is found back from a fitted estimator, and
a registered kind is one more valid head name until it is dropped."""

from __future__ import annotations

import numpy as np
import pytest

from headstart.errors import ConfigError
from headstart.heads import HEADS, registry
from headstart.heads.protocol import HeadKind
from headstart.heads.sweep import SWEEPS


@pytest.mark.parametrize("name", HEADS)
def test_every_builtin_name_is_a_kind_that_knows_its_grid(name):
    kind = registry.get_head(name)
    assert kind.name == name and isinstance(kind, HeadKind)
    assert kind.configs(SWEEPS["quick"]) == SWEEPS["quick"].configs(name) and kind.configs(SWEEPS["quick"])
    assert kind.tensors  # what a saved head of this kind must hold


@pytest.mark.parametrize("name", HEADS)
def test_the_kind_is_found_from_its_fitted_estimator(name):
    X = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    est = registry.get_head(name).estimator(**({"epochs": 2} if name in ("linear", "mlp") else {})).fit(X, y)
    assert registry.kind_of(est).name == name  # an MLPHead is not taken for its base class LinearHead


def test_only_torch_kinds_depend_on_the_seed_and_the_device():
    assert [n for n in HEADS if registry.get_head(n).seeded] == ["linear", "mlp"]
    assert [n for n in HEADS if registry.get_head(n).on_device] == ["linear", "mlp"]


def test_register_and_refusals():
    class Toy(HeadKind):
        name = "toy"

    with pytest.raises(ConfigError, match="unknown head 'toy'; expected one of logreg, linear, mlp, knn"):
        registry.get_head("toy")
    try:
        registry.register(Toy)
        assert registry.names() == (*HEADS, "toy") and registry.get_head("toy").name == "toy"
    finally:
        registry.unregister("toy")
    assert "toy" not in registry.names()
    with pytest.raises(ConfigError, match="built in"):
        registry.register(type("Shadow", (HeadKind,), {"name": "knn"}))
    with pytest.raises(ConfigError, match="not a head kind"):
        registry.register(object())
    with pytest.raises(TypeError, match="not a headstart head"):
        registry.kind_of(object())


def test_stop_split_moves_early_stopping_onto_train_rows_for_torch_kinds_only():
    import dataclasses

    from headstart.heads.fitting import FitSettings, Rows, fit_sweep, full_proba

    rng = np.random.default_rng(1)
    X = rng.normal(size=(90, 4)).astype(np.float32)
    y = (X[:, 0] + 0.3 * rng.normal(size=90) > 0).astype(np.int64)
    rows = Rows(X, y, np.array([str(i) for i in range(90)]), np.array([""] * 90))
    train, val = rows.take(np.arange(60)), rows.take(np.arange(60, 90))
    grid = dataclasses.replace(SWEEPS["quick"], train=dataclasses.replace(SWEEPS["quick"].train, epochs=3))
    fit = FitSettings(grid=grid, class_weight=None, n_classes=2, device="cpu")
    picked = []

    def stop_split(r):
        picked.append(len(r.y))
        return np.arange(10)

    (cand,) = fit_sweep("linear", train, val, fit=fit, seed=0, params=[{"lr": 1e-2, "weight_decay": 0.0}],
                        stop_split=stop_split)
    assert picked == [60]  # asked once, about the train rows
    assert np.allclose(cand.val_proba, full_proba(cand.estimator, val.X, 2), atol=1e-6)
    plain = fit_sweep("logreg", train, val, fit=fit, seed=0, params=[{"C": 1.0}])
    split = fit_sweep("logreg", train, val, fit=fit, seed=0, params=[{"C": 1.0}], stop_split=stop_split)
    assert picked == [60] and np.array_equal(plain[0].val_proba, split[0].val_proba)  # logreg never stops early
