"""Hugging Face provider: processor config as preprocessing, cached safetensors weights, remote code refused."""

import hashlib

import pytest
import torch

from headstart.backbones.registry import create_backbone
from headstart.backbones.taps import build_extractor
from headstart.errors import ConfigError, DependencyError, WeightsError

transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install 'headstart[hf]')")

from headstart.backbones.providers.hf import needs_remote_code, preprocessing_from_processor_config  # noqa: E402

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=8)
DINO_PROCESSOR = {"size": {"shortest_edge": 36}, "crop_size": {"height": 32, "width": 32}, "do_center_crop": True,
                  "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "resample": 3}


def test_processor_configs_become_preprocessing():
    dino = preprocessing_from_processor_config({**DINO_PROCESSOR, "size": {"shortest_edge": 256},
                                                "crop_size": {"height": 224, "width": 224}})
    assert (dino.input_size, dino.resize_size, dino.interpolation) == (224, 256, "bicubic")
    vit = preprocessing_from_processor_config({"size": {"height": 224, "width": 224}, "image_mean": [0.5] * 3,
                                               "image_std": [0.5] * 3, "resample": 2})
    assert (vit.input_size, vit.resize_size, vit.mean, vit.interpolation) == (224, 224, (0.5, 0.5, 0.5), "bilinear")
    plain = preprocessing_from_processor_config({"do_normalize": False}, default_size=64, image_size=32)
    assert (plain.input_size, plain.mean, plain.std) == (32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def test_pretrained_weights_come_from_the_cached_safetensors(fake_hub):
    torch.manual_seed(0)
    reference = transformers.Dinov2Model(transformers.Dinov2Config(image_size=56, **SMALL)).eval()
    snapshot = fake_hub("org/tiny-dino", {"model": reference.save_pretrained, "preprocessor_config.json": DINO_PROCESSOR})
    backbone = create_backbone("hf:org/tiny-dino", weights="imagenet")
    assert backbone.weights_tag == f"imagenet:org/tiny-dino@{snapshot.name[:12]}"
    assert backbone.weights_sha256 == hashlib.sha256((snapshot / "model.safetensors").read_bytes()).hexdigest()
    assert backbone.fingerprint_parts["revision"] == snapshot.name
    assert backbone.fingerprint_parts["trust_remote_code"] is False
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.allclose(backbone.module(x), reference(pixel_values=x).pooler_output, atol=1e-5)
    taps, outputs = build_extractor(backbone, layers=["final", "encoder.layer.0"], pools=["cls", "mean"])
    assert [(o.name, o.dim) for o in outputs] == [
        ("hf:org--tiny-dino:cls", 32), ("hf:org--tiny-dino:mean", 32),
        ("hf:org--tiny-dino:encoder.layer.0:cls", 32), ("hf:org--tiny-dino:encoder.layer.0:mean", 32)]


def test_remote_code_is_never_run_without_the_flag(fake_hub):
    config = {"model_type": "my_encoder", "auto_map": {"AutoModel": "modeling_my.MyEncoder"}}
    fake_hub("org/custom", {"config.json": config})
    assert needs_remote_code(config, {"vit"}) and not needs_remote_code({"model_type": "vit"}, {"vit"})
    with pytest.raises(ConfigError, match="needs code from its repository.*--trust-remote-code") as info:
        create_backbone("hf:org/custom", weights="random")
    assert "\n" not in str(info.value)
    fake_hub("org/future", {"config.json": {"model_type": "from_the_future"}})
    with pytest.raises(DependencyError, match="does not know model_type 'from_the_future'"):
        create_backbone("hf:org/future", weights="random")


def test_an_uncached_model_offline_is_one_line(monkeypatch):
    monkeypatch.delenv("HEADSTART_OFFLINE")  # Hugging Face's own switch is enough
    with pytest.raises(WeightsError, match=r"hf:org/absent \(org/absent\) is not in the hub cache .* HF_HUB_OFFLINE=1"):
        create_backbone("hf:org/absent", weights="random")


def test_a_vit_without_interpolation_at_another_size_is_refused(fake_hub, monkeypatch):
    fake_hub("org/tiny-vit", {"config.json": transformers.ViTConfig(image_size=32, **SMALL).save_pretrained})
    with pytest.raises(ConfigError, match="not a multiple of 8"):
        create_backbone("hf:org/tiny-vit", weights="random", image_size=44)
    monkeypatch.setattr(transformers.ViTModel, "forward", lambda self, pixel_values: None)  # no interpolate flag
    with pytest.raises(ConfigError, match=r"hf:org/tiny-vit takes only 32x32 inputs .*--image-size 32"):
        create_backbone("hf:org/tiny-vit", weights="random", image_size=48)
