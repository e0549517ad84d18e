"""The one exporter: verified against PyTorch, written atomically, refusing what it cannot reproduce."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headstart.errors import ExportError
from tests.engines.conftest import BranchOnData, TwoTaps, Unexportable, images

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'headstart[export]')")
onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'headstart[export]')")

from headstart.engines.export import export_onnx, run_onnx  # noqa: E402


def test_export_verifies_and_writes_a_dynamic_batch_graph(resnet, tmp_path):
    path = tmp_path / "sub" / "r18.onnx"
    result = export_onnx(resnet.module, images(2), path, metadata={"note": "hi"})
    assert result.path == path and path.read_bytes() == result.model
    assert result.exporter == "torchscript"  # the fast exporter goes first (see export.py)
    assert 0.0 <= result.max_abs_diff <= 1e-4
    assert result.output_names == ["features"] and not result.dict_output
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["note"] == "hi" and meta["headstart.exporter"] == "torchscript"
    x = images(5, seed=3)  # another batch size than the example's: the batch axis is free
    with torch.no_grad():
        ref = resnet.module(x).numpy()
    out = run_onnx(path, x, ["features"], False)
    assert out.shape == (5, 512)
    assert np.abs(out - ref).max() <= 1e-4
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["r18.onnx"]  # no temporary left beside it


def test_dict_outputs_keep_their_names(tmp_path):
    result = export_onnx(TwoTaps().eval(), images(3), tmp_path / "taps.onnx")
    assert result.output_names == ["mean", "max"] and result.dict_output
    out = run_onnx(result.model, images(4, seed=1), result.output_names, True)
    assert set(out) == {"mean", "max"} and out["max"].shape == (4, 8)


def test_a_module_that_cannot_export_is_refused_in_one_line_and_writes_nothing(tmp_path):
    path = tmp_path / "bad.onnx"
    with pytest.raises(ExportError) as info:
        export_onnx(Unexportable().eval(), images(2), path)
    message = str(info.value)
    assert "\n" not in message and "Unexportable cannot be exported" in message
    assert "torchscript:" in message and "dynamo:" in message  # both exporters were tried, each says why
    assert list(tmp_path.iterdir()) == []


def test_a_graph_outside_the_tolerance_is_refused(tmp_path):
    # BranchOnData traces the branch its example takes; a check batch that takes the other one differs by 2x.
    check = images(3) + 10.0
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_onnx(BranchOnData().eval(), images(2), tmp_path / "b.onnx", check_input=check)
    assert not (tmp_path / "b.onnx").exists()


def test_an_interrupted_write_leaves_no_partial_file(resnet, tmp_path, monkeypatch):
    import headstart.io as durable

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(durable, "replace_durably", boom)
    with pytest.raises(OSError):
        export_onnx(resnet.module, images(2), tmp_path / "r18.onnx")
    assert list(tmp_path.iterdir()) == []


def test_the_callers_training_mode_is_restored(resnet, tmp_path):
    module = resnet.module.train()
    export_onnx(module, images(2), None)
    assert module.training and module.layer1[0].bn1.training


def test_a_batch_of_one_example_still_gives_a_dynamic_graph():
    model = TwoTaps().eval()
    result = export_onnx(model, images(1), None)
    out = run_onnx(result.model, images(6), result.output_names, True)
    assert out["mean"].shape == (6, 8)


def test_the_dynamo_exporter_takes_over_when_torchscript_fails(tmp_path, monkeypatch):
    pytest.importorskip("onnxscript", reason="onnxscript is not installed (pip install 'headstart[export]')")
    import headstart.engines.export as export

    def no_tracer(*args):
        raise RuntimeError("TorchScript export is gone")

    monkeypatch.setitem(export._EXPORTERS, "torchscript", no_tracer)
    result = export_onnx(TwoTaps().eval(), images(2), tmp_path / "d.onnx")
    assert result.exporter == "dynamo" and result.max_abs_diff <= 1e-4
    out = run_onnx(tmp_path / "d.onnx", images(5, seed=2), result.output_names, True)
    assert out["mean"].shape == (5, 8)  # dynamic batch through torch.export's Dim too
