"""`--precision` of the torch heads: auto picks bf16 only where the device has it natively, bf16 training steps
keep the batched-equals-alone property and the selections, and every record says which precision ran."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from headstart.device import head_precision
from headstart.errors import ConfigError
from headstart.heads.batched import TorchHeadConfig, TrainSettings, train_batched
from headstart.heads.runner import HeadsConfig, run_heads
from headstart.heads.torch_heads import MLPHead
from tests.heads.synthetic_cache import make_cache, separable

CPU = torch.device("cpu")


@pytest.mark.parametrize("avx512_bf16,amx,expected", [
    (True, False, "bf16"), (False, True, "bf16"), (False, False, "fp32"), (None, None, "fp32"),  # None: no probe
])
def test_auto_is_bf16_only_where_the_cpu_has_bf16_units(monkeypatch, avx512_bf16, amx, expected):
    """The hardware probes are faked, not the decision: AVX512-BF16 or AMX -> bf16, AVX2 only (or a torch without
    the probes) -> fp32; an explicit precision always wins."""
    for name, value in (("_is_avx512_bf16_supported", avx512_bf16), ("_is_amx_tile_supported", amx)):
        if value is None:
            monkeypatch.delattr(torch.cpu, name, raising=False)
        else:
            monkeypatch.setattr(torch.cpu, name, lambda value=value: value, raising=False)
    assert head_precision("auto", CPU) == expected
    assert head_precision("fp32", CPU) == "fp32" and head_precision("bf16", CPU) == "bf16"


@pytest.mark.parametrize("supported", [True, False])
def test_auto_on_cuda_follows_the_cards_bf16_support(monkeypatch, supported):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: not supported, raising=False)  # ignored
    assert head_precision("auto", torch.device("cuda")) == ("bf16" if supported else "fp32")


def test_fp16_and_unknown_precisions_are_refused():
    for bad in ("fp16", "half"):
        with pytest.raises(ConfigError, match="expected one of auto, fp32, bf16"):
            head_precision(bad, CPU)
    with pytest.raises(ConfigError, match="precision 'fp16'"):
        HeadsConfig(precision="fp16").validate()


def test_bf16_training_steps_change_the_numbers_but_not_the_result():
    X, y = separable(300, 16, seed=6)
    configs = [TorchHeadConfig(lr=3e-3, weight_decay=1e-4, hidden=32, dropout=d) for d in (0.0, 0.3)]
    runs = {p: train_batched(X[:220], y[:220], X[220:], y[220:], configs=configs, seed=3,
                             settings=TrainSettings(epochs=15, batch_size=32, patience=4, precision=p))
            for p in ("fp32", "bf16")}
    for fp32, bf16 in zip(runs["fp32"], runs["bf16"]):
        assert fp32.history[0]["train_loss"] != bf16.history[0]["train_loss"]  # autocast really ran
        assert bf16.val_proba.dtype == np.float32  # predictions stay fp32
        auc = [roc_auc_score(y[220:], r.val_proba[:, 1]) for r in (fp32, bf16)]
        assert abs(auc[0] - auc[1]) < 0.02


def test_bf16_batched_equals_alone():
    X, y = separable(240, 10, seed=4)
    cfg = TorchHeadConfig(lr=1e-2, weight_decay=1e-4, hidden=16, dropout=0.5)
    settings = TrainSettings(epochs=12, batch_size=32, patience=4, precision="bf16")
    batched = train_batched(X[:180], y[:180], X[180:], y[180:], configs=[cfg, TorchHeadConfig(lr=1e-3, hidden=16)],
                            settings=settings, seed=7)[0]
    alone = MLPHead(lr=cfg.lr, weight_decay=cfg.weight_decay, hidden=16, dropout=0.5, epochs=12, batch_size=32,
                    patience=4, seed=7, precision="bf16").fit(X[:180], y[:180], X_val=X[180:], y_val=y[180:])
    assert batched.best_epoch == alone.best_epoch_
    np.testing.assert_allclose(batched.val_proba, alone.predict_proba(X[180:]), atol=1e-4)


def test_records_say_which_precision_ran(tmp_path):
    cache = make_cache(tmp_path / "c.h5")
    records = run_heads(cache_path=cache, runs_dir=tmp_path / "runs", progress=False,
                        config=HeadsConfig(heads=["linear", "logreg"], sweep="quick", n_boot=20, device="cpu",
                                           precision="bf16"))
    by_head = {r.head: r for r in records}
    assert by_head["linear"].config["precision"] == "bf16"
    assert "precision" not in by_head["logreg"].config  # sklearn heads have no autocast
