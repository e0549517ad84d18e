"""torchxrayvision provider: grayscale [-1024, 1024] preprocessing, its fixed size, features2, safe weight files."""

import os

import pytest
import torch

from headstart.backbones.registry import backbone_info, create_backbone
from headstart.errors import ConfigError, WeightsError

xrv = pytest.importorskip("torchxrayvision", reason="torchxrayvision is not installed (pip install 'headstart[xrv]')")

NAME = "xrv:densenet121-res224-all"


@pytest.fixture
def xrv_cache(tmp_path, monkeypatch):
    """torchxrayvision keeps weights in ~/.torchxrayvision/models_data: point ~ at an empty folder."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    url = xrv.models.model_urls["densenet121-res224-all"]["weights_url"]
    folder = tmp_path / "home" / ".torchxrayvision" / "models_data"
    folder.mkdir(parents=True)
    return folder / url.rsplit("/", 1)[-1]


def test_preprocessing_is_one_grayscale_channel_in_xrv_range():
    prep = create_backbone(NAME, weights="random").preprocessing
    assert (prep.channels, prep.input_size, prep.resize_size) == (1, 224, 224)
    assert prep.value_range == (-1024.0, 1024.0)
    assert prep.to_dict()["channels"] == 1  # part of the fingerprint, unlike the RGB default


def test_another_image_size_is_refused_never_resampled():
    with pytest.raises(ConfigError, match=r"xrv:densenet121-res224-all takes only 224x224 inputs .*--image-size 224"):
        create_backbone(NAME, weights="random", image_size=64)


def test_pickled_xrv_weights_load_safely_and_match_features2(xrv_cache):
    torch.manual_seed(2)
    original = xrv.models.DenseNet(weights=None).eval()
    torch.save(original, xrv_cache)  # torchxrayvision ships whole pickled modules, not state dicts
    backbone = create_backbone(NAME, weights="imagenet")
    assert backbone.weights_tag == "imagenet:densenet121-res224-all"
    assert backbone.fingerprint_parts["pretrained_tag"] == "densenet121-res224-all"
    x = torch.rand(2, 1, 224, 224, generator=torch.Generator().manual_seed(0)) * 2048 - 1024
    with torch.inference_mode():
        assert torch.allclose(backbone.module(x), original.features2(x), atol=1e-4)


def test_a_weights_file_that_would_run_code_is_refused(xrv_cache):
    torch.save({"payload": os.system}, xrv_cache)
    with pytest.raises(WeightsError, match="cannot be read safely") as info:
        create_backbone(NAME, weights="imagenet")
    assert "\n" not in str(info.value)


def test_listing_facts_for_the_512_px_resnet():
    info = backbone_info("xrv:resnet50-res512-all")
    assert (info["num_features"], info["input_size"], info["cached"]) == (2048, 512, False)
