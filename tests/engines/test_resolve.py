"""Engine choice and the torch fallback: one interface, the same features, never a traceback."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from headstart.engines.resolve import choose_engine
from headstart.engines.runtime import TorchEngine, onnx_threads, spinning_wanted
from headstart.errors import ConfigError, DependencyError
from tests.engines.conftest import BranchOnData, TwoTaps, Unexportable, images, tiny_backbone

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)  # a device object needs no GPU


@pytest.mark.parametrize("spec, device, amp, installed, expected", [
    ("auto", CPU, None, True, "onnxruntime"),
    ("auto", CPU, None, False, "torch"),
    ("auto", CPU, torch.bfloat16, True, "torch"),  # bf16 autocast is torch's
    ("auto", CUDA, torch.float16, True, "torch"),  # torch stays the GPU engine
    ("auto", CUDA, None, True, "torch"),
    ("torch", CPU, None, True, "torch"),
    ("onnxruntime", CPU, None, True, "onnxruntime"),
])
def test_choose_engine(spec, device, amp, installed, expected):
    assert choose_engine(spec, device, amp_dtype=amp, onnx_available=installed).name == expected


@pytest.mark.parametrize("spec, device, amp, installed, error, words", [
    ("tensorrt", CPU, None, True, ConfigError, "auto, torch, onnxruntime"),
    ("onnxruntime", CUDA, None, True, ConfigError, "--engine torch"),
    ("onnxruntime", CPU, torch.bfloat16, True, ConfigError, "fp32"),
    ("onnxruntime", CPU, None, False, DependencyError, "pip install"),
])
def test_explicit_requests_that_cannot_be_met_are_refused(spec, device, amp, installed, error, words):
    with pytest.raises(error, match=words):
        choose_engine(spec, device, amp_dtype=amp, onnx_available=installed)


def test_threads_follow_torch_and_spinning_follows_the_wait_policy(monkeypatch):
    torch_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert onnx_threads() == 2
        torch.set_num_threads(1)
        assert onnx_threads() == 1
    finally:
        torch.set_num_threads(torch_threads)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert not spinning_wanted()
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")
    assert spinning_wanted()


def test_torch_engine_matches_the_plain_module(resnet):
    x = images(3)
    with torch.no_grad():
        ref = resnet.module.eval()(x).numpy()
    out = TorchEngine(resnet.module, CPU)(x)
    assert out.dtype == np.float32 and out.shape == (3, 512)
    np.testing.assert_allclose(out, ref, atol=1e-5)


ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'headstart[export]')")

from headstart.engines.resolve import FirstBatchCheck, resolve_engine  # noqa: E402


def warnings_in(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_auto_on_cpu_runs_onnxruntime_with_the_same_features(resnet, caplog):
    x = images(24, seed=5)
    ref = TorchEngine(resnet.module, CPU)(x)
    with caplog.at_level(logging.WARNING):
        engine = resolve_engine("auto", CPU, backbone=resnet)
        out = engine(x)
        out2 = engine(images(7, seed=6))
    assert isinstance(engine, FirstBatchCheck) and engine.name == "onnxruntime"
    assert engine.tag == f"onnxruntime {ort.__version__}"
    assert warnings_in(caplog) == []
    cos = (out * ref).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() >= 0.99999
    assert np.abs(out - ref).max() <= 1e-4 and out2.shape == (7, 512)
    info = engine.describe()
    assert info["engine"] == "onnxruntime" and info["engine_version"] == ort.__version__
    assert info["onnx_max_abs_diff"] <= 1e-4 and info["onnx_graph"].endswith(".onnx")


def test_explicit_torch_is_the_plain_torch_engine(resnet):
    engine = resolve_engine("torch", CPU, backbone=resnet)
    assert isinstance(engine, TorchEngine) and engine.name == "torch"
    assert engine.describe()["engine"] == "torch"


def test_a_module_that_cannot_export_falls_back_to_torch_with_one_line(caplog):
    backbone = tiny_backbone(Unexportable(), "custom")
    with caplog.at_level(logging.WARNING):
        engine = resolve_engine("auto", CPU, backbone=backbone)
        out = engine(images(4))
    assert engine.name == "torch" and out.shape == (4, 4)
    (line,) = warnings_in(caplog)
    assert line.startswith("custom runs on torch: ") and "cannot be exported" in line and "\n" not in line
    assert "Traceback" not in caplog.text


def test_a_first_batch_mismatch_falls_back_to_torch_for_good(caplog):
    backbone = tiny_backbone(BranchOnData(), "branchy")
    bright = images(5) + 10.0  # takes the branch the export's random batch did not
    ref = TorchEngine(backbone.module, CPU)(bright)
    with caplog.at_level(logging.WARNING):
        engine = resolve_engine("onnxruntime", CPU, backbone=backbone)
        assert engine.name == "onnxruntime"  # the export itself verified
        out = engine(bright)
        engine(images(3))
    np.testing.assert_allclose(out, ref, atol=1e-6)  # this batch already came from torch
    assert engine.name == "torch" and "differs from PyTorch" in engine.describe()["onnx_fallback"]
    (line,) = warnings_in(caplog)
    assert line.startswith("branchy runs on torch: onnxruntime differs from PyTorch")


def test_dict_outputs_come_back_as_dicts_from_both_engines():
    backbone = tiny_backbone(TwoTaps(), "taps", dim=8)
    x = images(4)
    onnx_out = resolve_engine("onnxruntime", CPU, backbone=backbone, taps=("mean", "max"))(x)
    torch_out = resolve_engine("torch", CPU, backbone=backbone)(x)
    assert list(onnx_out) == list(torch_out) == ["mean", "max"]
    for k in onnx_out:
        np.testing.assert_allclose(onnx_out[k], torch_out[k], atol=1e-5)


def test_a_damaged_cached_graph_is_exported_again(resnet, caplog):
    engine = resolve_engine("onnxruntime", CPU, backbone=resnet)
    path = engine.graph.model
    path.write_bytes(b"not a protobuf")
    with caplog.at_level(logging.WARNING):
        again = resolve_engine("onnxruntime", CPU, backbone=resnet)
    assert again.graph.exported and again.graph.model == path and path.stat().st_size > 1000
    (line,) = warnings_in(caplog)
    assert "does not load" in line


def test_check_decides_the_engine_before_any_batch_is_computed(caplog):
    backbone = tiny_backbone(BranchOnData(), "branchy")
    engine = resolve_engine("auto", CPU, backbone=backbone)
    assert engine.check(images(20) + 10.0) == "torch"  # decided on real rows, once
    assert engine.check(images(4)) == "torch"  # later calls change nothing
    ok = resolve_engine("auto", CPU, backbone=tiny_backbone(BranchOnData(), "branchy"))
    assert ok.check(images(20)) == "onnxruntime" and ok.max_abs_diff <= 1e-4
    assert len(warnings_in(caplog)) == 1
