"""The graph cache: one export per key, reused, written atomically, next to torch's weights."""

from __future__ import annotations

import logging

import pytest
import torch

from headstart.backbones.registry import create_backbone

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'headstart[export]')")
pytest.importorskip("onnx", reason="onnx is not installed (pip install 'headstart[export]')")

import headstart.engines.graph_cache as graph_cache  # noqa: E402
from headstart.engines.graph_cache import GraphKey, cache_dir, cached_graph  # noqa: E402


def key_for(bb, **changes) -> GraphKey:
    parts = dict(backbone=bb.name, weights_tag=bb.weights_tag, weights_sha256=bb.weights_sha256,
                 preprocessing=bb.preprocessing.to_dict(),
                 input_shape=(3, bb.preprocessing.input_size, bb.preprocessing.input_size))
    parts.update(changes)
    return GraphKey.for_module(bb.module, **parts)


@pytest.fixture
def counted_exports(monkeypatch):
    calls = []
    real = graph_cache.export_onnx

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(graph_cache, "export_onnx", counting)
    return calls


def test_cache_folder_sits_beside_torch_hub_and_follows_the_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert cache_dir() == tmp_path / "th" / "headstart-onnx"
    monkeypatch.setenv("HEADSTART_ONNX_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_second_request_reuses_the_file_without_exporting(resnet, counted_exports):
    key = key_for(resnet)
    first = cached_graph(key, resnet.module)
    assert first.exported and first.export_seconds > 0 and first.exporter == "torchscript"
    path = first.model
    assert path.parent == cache_dir() and path.name == key.filename() and path.name.startswith("resnet18-")
    mtime = path.stat().st_mtime_ns
    again = cached_graph(key_for(resnet), resnet.module)  # an equal key built afresh
    assert not again.exported and again.model == path and again.export_seconds == 0.0
    assert path.stat().st_mtime_ns == mtime
    assert len(counted_exports) == 1
    # no temporary files left behind (extractions elsewhere in the session keep their own graphs beside it)
    assert path.is_file() and not [p.name for p in path.parent.iterdir() if p.name.startswith(".")]


def test_the_key_separates_what_changes_the_graph(resnet):
    base = key_for(resnet)
    other_seed = create_backbone("resnet18", weights="random", image_size=32, seed=1)
    assert key_for(other_seed).digest() != base.digest()  # random weights: the tensor digest tells seeds apart
    assert key_for(resnet).digest() == base.digest()
    assert key_for(resnet, taps=("layer3:mean",)).digest() != base.digest()
    assert key_for(resnet, input_shape=(3, 64, 64)).digest() != base.digest()
    assert key_for(resnet, weights_tag="file:x.pt", weights_sha256="ab" * 32).state_digest == ""
    assert base.versions["torch"] == torch.__version__ and "graph_format" in base.versions


def test_provider_names_become_safe_file_names(resnet):
    key = key_for(resnet, backbone="hf:org/some model")
    assert "/" not in key.filename() and ":" not in key.filename() and " " not in key.filename()


def test_an_unwritable_cache_folder_runs_from_memory_with_one_warning(resnet, tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("HEADSTART_ONNX_CACHE", str(blocker / "onnx"))
    with caplog.at_level(logging.WARNING, logger="headstart"):
        graph = cached_graph(key_for(resnet), resnet.module)
    assert graph.exported and isinstance(graph.model, bytes)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "HEADSTART_ONNX_CACHE" in warnings[0].getMessage()
