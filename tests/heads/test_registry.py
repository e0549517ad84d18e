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
