"""Backbone names and feature-set names: the pure string rules the cache keys depend on."""

import pytest

from headstart.backbones.names import BackboneName, feature_set_name, parse_backbone
from headstart.cache.schema import SET_NAME_RE
from headstart.errors import ConfigError


@pytest.mark.parametrize("name,parsed", [
    ("resnet18", BackboneName("torchvision", "resnet18")),
    ("timm:resnet18", BackboneName("timm", "resnet18")),
    ("timm:vit_small_patch14_dinov2.lvd142m", BackboneName("timm", "vit_small_patch14_dinov2", "lvd142m")),
    ("xrv:densenet121-res224-all", BackboneName("xrv", "densenet121-res224-all")),
    ("hf:microsoft/rad-dino", BackboneName("hf", "microsoft/rad-dino")),
])
def test_parse_backbone_round_trips(name, parsed):
    assert parse_backbone(name) == parsed
    assert parsed.full == name


@pytest.mark.parametrize("name,message", [
    ("tf:resnet18", "unknown backbone provider 'tf'"),
    ("torchvision:resnet18", "unknown backbone provider 'torchvision'"),
    ("hf:rad-dino", "hf:ORG/NAME"),
    ("hf:a--b/c", "hf:ORG/NAME"),
    ("timm:", "malformed"),
    ("res net", "malformed"),
])
def test_malformed_names_are_usage_errors(name, message):
    with pytest.raises(ConfigError, match=message):
        parse_backbone(name)


@pytest.mark.parametrize("backbone,layer,pool,expected", [
    ("resnet18", None, "default", "resnet18"),
    ("resnet18", "final", "default", "resnet18"),
    ("resnet18", "layer3", "gem", "resnet18:layer3:gem"),
    ("timm:vit_tiny_patch16_224", None, "cls", "timm:vit_tiny_patch16_224:cls"),
    ("timm:vit_small_patch14_dinov2.lvd142m", "blocks.8", "cls+mean", "timm:vit_small_patch14_dinov2.lvd142m:blocks.8:cls+mean"),
    ("hf:microsoft/rad-dino", None, "mean", "hf:microsoft--rad-dino:mean"),
    ("xrv:densenet121-res224-all", "features.denseblock3", "default", "xrv:densenet121-res224-all:features.denseblock3"),
])
def test_feature_set_names_are_stable_and_valid_cache_keys(backbone, layer, pool, expected):
    name = feature_set_name(backbone, layer=layer, pool=pool)
    assert name == expected
    assert "/" not in name and SET_NAME_RE.match(name)


def test_feature_set_name_refuses_unknown_pools_and_odd_layers():
    with pytest.raises(ConfigError, match="--pool 'max' is unknown; expected one of default, cls, mean, gem"):
        feature_set_name("resnet18", pool="max")
    with pytest.raises(ConfigError, match="--layer 'layer3:x' is malformed"):
        feature_set_name("resnet18", layer="layer3:x")


def test_core_use_imports_no_provider_package():
    """The core install never imports timm, torchxrayvision or transformers; `--help` does not even import torch."""
    import subprocess
    import sys

    code = ("import sys; from headstart.cli import cli; assert 'torch' not in sys.modules, 'torch'; "
            "from headstart.backbones.registry import create_backbone, check_name; check_name('resnet18'); "
            "import headstart.backbones.taps, headstart.backbones.sanity, headstart.cli.backbones; "
            "bad = [m for m in ('timm', 'torchxrayvision', 'transformers') if m in sys.modules]; assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-500:]
