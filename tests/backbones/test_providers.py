"""Contract over a sample of every provider's models, built with random weights (no network, no weight files).

Each model must give its documented feature dim, be deterministic under a seed, be the same function inside the
fine-tuning model, carry its provider and package version into the fingerprint, and refuse `--weights imagenet`
offline with one line that names the alternatives. A provider whose package is missing is skipped, with a reason.
"""

import importlib.metadata

import pytest
import torch

from headstart.backbones.names import feature_set_name
from headstart.backbones.registry import create_backbone, create_model
from headstart.backbones.taps import build_extractor
from headstart.errors import WeightsError

# (name, package, --image-size, feature dim): tiny inputs keep the whole contract within seconds on a CPU.
CONTRACT = [
    ("timm:resnet18", "timm", 32, 512),
    ("timm:vit_tiny_patch16_224", "timm", 32, 192),
    ("timm:convnext_atto", "timm", 32, 320),
    ("timm:efficientnet_b0", "timm", 32, 1280),
    ("xrv:densenet121-res224-all", "torchxrayvision", None, 1024),
    ("hf:headstart-test/tiny-dinov2", "transformers", None, 32),
    ("hf:headstart-test/tiny-vit", "transformers", 48, 32),  # built for 32 px: position interpolation to 48
]
DISTRIBUTION = {"timm": "timm", "torchxrayvision": "torchxrayvision", "transformers": "transformers"}


def tiny_hf_repos(fake_hub) -> None:
    """Config-only snapshots of two tiny random encoders, as the hub cache would hold them."""
    from transformers import Dinov2Config, ViTConfig

    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=8)
    processor = {"size": {"shortest_edge": 36}, "crop_size": {"height": 32, "width": 32}, "do_center_crop": True,
                 "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "resample": 3}
    fake_hub("headstart-test/tiny-dinov2", {"config.json": Dinov2Config(image_size=56, **small).save_pretrained,
                                            "preprocessor_config.json": processor})
    vit_processor = {"size": {"height": 32, "width": 32}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    fake_hub("headstart-test/tiny-vit", {"config.json": ViTConfig(image_size=32, **small).save_pretrained,
                                         "preprocessor_config.json": vit_processor})


@pytest.fixture
def model_name(request, fake_hub):
    name, package, size, dim = request.param
    pytest.importorskip(package, reason=f"{package} is not installed (pip install 'headstart[...]' for its extra)")
    if name.startswith("hf:"):
        tiny_hf_repos(fake_hub)
    return name, package, size, dim


def _batch(backbone, n=2) -> torch.Tensor:
    prep = backbone.preprocessing
    return torch.randn(n, prep.channels, prep.input_size, prep.input_size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("model_name", CONTRACT, indirect=True, ids=[c[0] for c in CONTRACT])
def test_provider_contract(model_name):
    name, package, size, dim = model_name
    backbone = create_backbone(name, weights="random", image_size=size, seed=0)
    assert backbone.name == name and backbone.provider == name.split(":")[0]
    assert backbone.num_features == dim
    assert not backbone.module.training and not any(p.requires_grad for p in backbone.module.parameters())
    parts = backbone.fingerprint_parts
    assert parts["provider"] == backbone.provider and parts["model"] == name.split(":", 1)[1]
    assert parts["provider_version"] == importlib.metadata.version(DISTRIBUTION[package])
    assert backbone.weights_tag == "random" and backbone.weights_sha256 == ""

    x = _batch(backbone)
    with torch.inference_mode():
        features = backbone.module(x)
    assert features.shape == (2, dim) and torch.isfinite(features).all()

    # The same seed rebuilds the same network, inside the fine-tuning model too (the cached-feature function).
    model, prep, info = create_model(name, num_classes=2, weights="random", image_size=size, seed=0)
    assert prep == backbone.preprocessing and info["num_features"] == dim
    model.eval()
    with torch.inference_mode():
        assert torch.allclose(model.backbone(x), features, atol=1e-6)
        assert model(x).shape == (2, 2)
    other = create_backbone(name, weights="random", image_size=size, seed=1)
    with torch.inference_mode():
        assert not torch.allclose(other.module(x), features)

    taps, outputs = build_extractor(backbone)
    assert [(o.name, o.dim) for o in outputs] == [(feature_set_name(name), dim)]
    with torch.inference_mode():
        assert torch.equal(taps(x)[outputs[0].name], features)


@pytest.mark.parametrize("model_name", CONTRACT, indirect=True, ids=[c[0] for c in CONTRACT])
def test_offline_imagenet_is_refused_in_one_line(model_name):
    name, _, size, _ = model_name
    with pytest.raises(WeightsError) as info:
        create_backbone(name, weights="imagenet", image_size=size)
    message = str(info.value)
    assert "\n" not in message and "--weights random" in message and "--weights PATH" in message
