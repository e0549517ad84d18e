"""`extract --pool/--layer/--engine`: several sets from one forward pass, the engine in attributes and fingerprint,
no set computed (or resumed) by two engines, sanity attributes, and the grayscale (torchxrayvision) input path."""

from __future__ import annotations

import json
import logging

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from headstart.backbones.types import Preprocessing
from headstart.extract.preprocess import normalize_batch, to_uint8_tensor
from tests.extract.test_extract import BASE, features, invoke, sha256

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'headstart[export]')")


def n_batches(data, batch_size=8) -> int:
    return -(-len([p for p in data.rglob("*.jpeg")]) // batch_size)


@pytest.fixture
def forwards(monkeypatch):
    """Counts real (not meta-device) forward passes of torchvision ResNets, and onnxruntime engine runs."""
    from torchvision.models import ResNet

    from headstart.engines.runtime import OnnxEngine

    calls = {"torch": 0, "onnxruntime": 0}

    def hook(module, args, _out):
        if isinstance(module, ResNet) and args[0].device.type != "meta":
            calls["torch"] += 1

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    real = OnnxEngine.__call__

    def counted(self, x):
        calls["onnxruntime"] += 1
        return real(self, x)

    monkeypatch.setattr(OnnxEngine, "__call__", counted)
    yield calls
    handle.remove()


def test_every_layer_and_pool_comes_from_one_forward_pass_per_batch(phantom_dir, tmp_path, forwards):
    out = tmp_path / "c.h5"
    r = invoke("extract", str(phantom_dir), "-o", str(out), "-b", "resnet18", "--pool", "default", "--pool", "gem",
               "--layer", "final", "--layer", "layer3", "--engine", "torch", *BASE)
    assert r.exit_code == 0, r.output
    assert forwards == {"torch": n_batches(phantom_dir), "onnxruntime": 0}
    with h5py.File(out, "r") as f:
        dims = {name: ds.shape[1] for name, ds in f["features"].items()}
        layer3 = dict(f["features/resnet18:layer3:gem"].attrs)
    assert dims == {"resnet18": 512, "resnet18:gem": 512, "resnet18:layer3": 256, "resnet18:layer3:gem": 256}
    assert (layer3["layer"], layer3["pool"], layer3["sets_per_forward"]) == ("layer3", "gem", 4)
    parts = json.loads(layer3["fingerprint_parts"])
    assert parts.pop("random_weights_sha256") == layer3["random_weights_sha256"]
    assert parts == {"layer": "layer3", "pool": "gem", "precision": "fp32", "weights_seed": 0}
    # the default set of a multi-set run is the plain backbone's feature, bit for bit
    alone = tmp_path / "alone.h5"
    assert invoke("extract", str(phantom_dir), "-o", str(alone), "-b", "resnet18", "--engine", "torch",
                  *BASE).exit_code == 0
    np.testing.assert_array_equal(features(out, "resnet18"), features(alone, "resnet18"))
    info = json.loads(invoke("cache", "info", str(out), "--json").output)
    assert [(s["name"], s["backbone"], s["layer"], s["pool"], s["engine"]) for s in info["feature_sets"]][-1] == (
        "resnet18:layer3:gem", "resnet18", "layer3", "gem", "torch")


def test_onnxruntime_runs_every_batch_after_one_check_and_says_so(phantom_dir, tmp_path, forwards, caplog):
    args = ["-b", "resnet18", "--pool", "default", "--pool", "mean", *BASE]
    assert invoke("extract", str(phantom_dir), "-o", str(tmp_path / "first.h5"), *args).exit_code == 0  # exports
    forwards.update(torch=0, onnxruntime=0)
    caplog.clear()
    out = tmp_path / "c.h5"
    with caplog.at_level(logging.INFO, logger="headstart"):
        r = invoke("extract", str(phantom_dir), "-o", str(out), *args)
    assert r.exit_code == 0, r.output
    assert not any("exporting" in m for m in caplog.messages)  # the graph cache kept the first run's graph
    # one check on the probe rows (both engines), then onnxruntime alone on every batch
    assert forwards == {"torch": 1, "onnxruntime": n_batches(phantom_dir) + 1}
    lines = [m for m in caplog.messages if "engine onnxruntime" in m]
    assert len(lines) == 1 and lines[0].startswith(f"resnet18: engine onnxruntime {ort.__version__} (")
    with h5py.File(out, "r") as f:
        attrs = dict(f["features/resnet18:mean"].attrs)
    assert (attrs["engine"], attrs["engine_version"], attrs["precision"]) == ("onnxruntime", ort.__version__, "fp32")
    parts = json.loads(attrs["fingerprint_parts"])
    assert parts.pop("random_weights_sha256") == attrs["random_weights_sha256"]
    assert parts == {"engine": "onnxruntime", "pool": "mean", "precision": "fp32", "weights_seed": 0}
    assert attrs["onnx_max_abs_diff"] <= 1e-4 and attrs["onnx_graph"].endswith(".onnx")
    text = invoke("cache", "info", str(out))
    assert text.exit_code == 0 and "engine" in text.output and "onnxruntime" in text.output
    assert invoke("cache", "verify", str(out)).exit_code == 0


def test_a_torch_cache_is_kept_by_auto_refused_by_onnxruntime_and_recomputed_on_overwrite(phantom_dir, tmp_path):
    out = tmp_path / "c.h5"
    assert invoke("extract", str(phantom_dir), "-o", str(out), "-b", "resnet18", "--engine", "torch",
                  *BASE).exit_code == 0
    torch_features = features(out, "resnet18")
    with h5py.File(out, "a") as f:  # what a cache made before engines existed looks like: no engine attributes
        for key in ("engine", "engine_version", "layer", "pool", "provider", "sanity", "sets_per_forward"):
            del f["features/resnet18"].attrs[key]
    before = sha256(out)
    info = json.loads(invoke("cache", "info", str(out), "--json").output)["feature_sets"][0]
    assert (info["engine"], info["layer"], info["pool"]) == ("torch", "final", "default")
    assert invoke("cache", "verify", str(out)).exit_code == 0

    kept = invoke("extract", str(phantom_dir), "-o", str(out), "-b", "resnet18", *BASE)  # auto: onnxruntime here
    assert kept.exit_code == 0 and "already complete" in kept.output and sha256(out) == before
    refused = invoke("extract", str(phantom_dir), "-o", str(out), "-b", "resnet18", "--engine", "onnxruntime", *BASE)
    assert refused.exit_code == 1 and sha256(out) == before
    error = refused.output.strip().splitlines()[-1]  # the lines before it are the data set's log line
    assert error.startswith("Error: feature set 'resnet18' in ") and error.endswith("--overwrite to recompute it "
                                                                                  "with onnxruntime")
    assert "was computed by the torch engine and --engine onnxruntime was asked for" in error

    redone = invoke("extract", str(phantom_dir), "-o", str(out), "-b", "resnet18", "--engine", "onnxruntime",
                    "--overwrite", *BASE)
    assert redone.exit_code == 0, redone.output
    with h5py.File(out, "r") as f:
        assert f["features/resnet18"].attrs["engine"] == "onnxruntime"
    onnx_features = features(out, "resnet18").astype(np.float64)
    ref = torch_features.astype(np.float64)
    cosine = (onnx_features * ref).sum(1) / np.linalg.norm(onnx_features, axis=1) / np.linalg.norm(ref, axis=1)
    assert cosine.min() >= 0.99999


def test_a_resume_never_mixes_engines(phantom_dir, tmp_path, monkeypatch):
    from headstart.cache.stager import Stager

    real_write = Stager.write_batch
    count = {"n": 0}

    def flaky_write(self, *a, **k):
        if count["n"] == 2:
            raise KeyboardInterrupt
        count["n"] += 1
        return real_write(self, *a, **k)

    out = tmp_path / "c.h5"
    monkeypatch.setattr(Stager, "write_batch", flaky_write)
    interrupted = invoke("extract", str(phantom_dir), "-o", str(out), "-b", "resnet18", "--engine", "torch", *BASE)
    assert interrupted.exit_code == 1 and "interrupted" in interrupted.output and not out.exists()
    monkeypatch.setattr(Stager, "write_batch", real_write)
    other = invoke("extract", str(phantom_dir), "-o", str(out), "-b", "resnet18", "--engine", "onnxruntime", *BASE)
    assert other.exit_code == 1 and "was staged by the torch engine and --engine onnxruntime" in other.output
    finished = invoke("extract", str(phantom_dir), "-o", str(out), "-b", "resnet18", *BASE)  # auto finishes it
    assert finished.exit_code == 0, finished.output
    ref = tmp_path / "ref.h5"
    assert invoke("extract", str(phantom_dir), "-o", str(ref), "-b", "resnet18", "--engine", "torch",
                  *BASE).exit_code == 0
    np.testing.assert_array_equal(features(out, "resnet18"), features(ref, "resnet18"))
    with h5py.File(out, "r") as f:
        assert f["features/resnet18"].attrs["engine"] == "torch"


def test_collapsed_features_are_recorded_and_warned_about(phantom_dir, tmp_path, caplog):
    from headstart.backbones.registry import create_backbone

    zeros = {k: torch.zeros_like(v) for k, v in create_backbone("resnet18", weights="random", image_size=32)
             .module.state_dict().items()}
    weights = tmp_path / "zeros.pth"
    torch.save(zeros, weights)
    out = tmp_path / "c.h5"
    with caplog.at_level(logging.WARNING, logger="headstart"):
        r = invoke("extract", str(phantom_dir), "-o", str(out), "-b", "resnet18", "--weights", str(weights),
                   "--image-size", "32", "--batch-size", "8", "--workers", "0", "--engine", "torch")
    assert r.exit_code == 0, r.output
    assert any("feature rows are nearly identical" in m for m in caplog.messages)
    with h5py.File(out, "r") as f:
        sanity = json.loads(f["features/resnet18"].attrs["sanity"])
    assert sanity["relative_variance"] == 0.0 and sanity["nonfinite_rows"] == 0
    assert "nearly identical" in sanity["warnings"][0]
    low, high = sanity["input_range"]
    assert sanity["expected_input_range"][0] <= low < high <= sanity["expected_input_range"][1]


GRAY = Preprocessing(input_size=8, resize_size=8, mean=(0.5,), std=(0.5 / 1024,), channels=1)


def test_a_grayscale_model_reads_the_images_own_plane():
    plane = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    as_rgb = Image.fromarray(plane).convert("RGB")  # how the decoder hands over a grey X-ray
    crop = to_uint8_tensor(as_rgb, GRAY)
    assert crop.shape == (1, 8, 8) and torch.equal(crop[0], torch.from_numpy(plane))  # no channel averaging
    colour = Image.fromarray(np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    assert torch.equal(to_uint8_tensor(colour, GRAY)[0], torch.from_numpy(np.array(colour.convert("L"))))
    x = normalize_batch(crop[None], GRAY, device="cpu")
    assert x.shape == (1, 1, 8, 8) and x.min() >= -1024 and x.max() <= 1024
    assert float(x.flatten()[0]) == pytest.approx((plane[0, 0] / 255 - 0.5) * 2048, rel=1e-5)
