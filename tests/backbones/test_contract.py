"""Contract over backbones: frozen, eval mode, (B, num_features) finite features, seeded, and the same function
inside the fine-tuning model. Random weights at small inputs keep this fast on CPU."""

import pytest
import torch

from headstart.backbones.providers.torchvision import _build
from headstart.backbones.registry import (backbone_info, create_backbone, create_model, list_backbones,
                                          preprocessing_for, split_parameters)
from headstart.backbones.surgery import last_stage_modules
from headstart.backbones.weights import default_weights
from headstart.errors import ConfigError

# (name, smallest convenient input): vit_b_16 is built for 32 px, i.e. a 2x2 grid of 16-px patches.
CONTRACT = [("resnet18", 32), ("resnet50", 32), ("densenet121", 32), ("efficientnet_b0", 32),
            ("convnext_tiny", 32), ("vit_b_16", 32)]


@pytest.mark.parametrize("name,size", CONTRACT)
def test_backbone_contract(name, size):
    backbone = create_backbone(name, weights="random", image_size=size, seed=0)
    module = backbone.module
    assert not module.training and all(not m.training for m in module.modules())
    assert not any(p.requires_grad for p in module.parameters())
    assert backbone.preprocessing.input_size == size
    assert backbone.weights_tag == "random" and backbone.weights_sha256 == ""

    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        features = module(x)
    assert features.shape == (3, backbone.num_features)
    assert torch.isfinite(features).all()

    # create_model rebuilds the backbone from the same seed: identical weights (determinism, which resumed
    # extraction relies on) and model.backbone is exactly the cached-feature function.
    model, prep, info = create_model(name, num_classes=2, weights="random", image_size=size, seed=0)
    assert prep == backbone.preprocessing
    assert info == {"weights_tag": "random", "weights_sha256": "", "num_features": backbone.num_features}
    assert model.training and all(p.requires_grad for p in model.parameters())
    model.eval()
    with torch.inference_mode():
        assert torch.equal(model.backbone(x), features)
        assert model(x).shape == (3, 2)


def test_seed_changes_random_weights():
    a = create_backbone("resnet18", weights="random", image_size=32, seed=0).module
    b = create_backbone("resnet18", weights="random", image_size=32, seed=1).module
    assert not torch.equal(a.conv1.weight, b.conv1.weight)


def test_random_init_does_not_disturb_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    create_backbone("squeezenet1_1", weights="random", image_size=32, seed=7)
    assert torch.equal(torch.rand(3), expected)


# One small member per family: the classifier surgery and last-stage rule must fit each layout.
FAMILIES = {"alexnet": 4096, "vgg11": 4096, "squeezenet1_1": 512, "googlenet": 1024, "inception_v3": 2048,
            "mobilenet_v3_small": 1024, "mobilenet_v2": 1280, "mnasnet0_5": 1280, "shufflenet_v2_x0_5": 1024,
            "regnet_y_400mf": 440, "wide_resnet50_2": 2048, "efficientnet_v2_s": 1280, "swin_t": 768,
            "swin_v2_t": 768, "maxvit_t": 512, "densenet121": 1024}


@pytest.mark.parametrize("name,dim", sorted(FAMILIES.items()))
def test_every_family_has_features_and_a_last_stage(name, dim):
    info = backbone_info(name)
    assert info["num_features"] == dim
    assert info["params_m"] > 0 and info["gflops"] > 0 and 50 < info["top1"] < 100

    # The last stage (`--freeze partial`) is a tail of the stripped backbone: some of its parameters, not all,
    # ending with the parameter nearest the head. Shapes only (meta device), so vgg and friends stay cheap.
    backbone, _ = _build(name, input_size=info["input_size"], device=torch.device("meta"))
    params = [id(p) for p in backbone.parameters()]
    last = {id(p) for m in last_stage_modules(backbone, name) for p in m.parameters()}
    assert 0 < len(last) < len(params)
    assert set(params[-len(last):]) == last, "the last stage is not the end of the backbone"


def test_split_parameters_partitions_the_model():
    model, _, _ = create_model("resnet18", num_classes=3, weights="random", image_size=32, seed=0)
    groups = split_parameters(model, "resnet18")
    assert [p.shape for p in groups["head"]] == [(3, 512), (3,)]
    assert {id(p) for p in groups["last_stage"]} == {id(p) for p in model.backbone.layer4.parameters()}
    ids = [id(p) for g in groups.values() for p in g]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))


def test_split_parameters_keeps_leftover_classifier_in_last_stage():
    model, _, _ = create_model("mobilenet_v3_small", num_classes=2, weights="random", image_size=32, seed=0)
    last = {id(p) for p in split_parameters(model, "mobilenet_v3_small")["last_stage"]}
    assert {id(p) for p in model.backbone.classifier.parameters()} <= last  # the 576->1024 Linear


def test_list_backbones_is_every_torchvision_classifier():
    names = list_backbones()
    assert names == sorted(names) and len(names) >= 70
    assert {n for n, _ in CONTRACT} <= set(names)


def test_unknown_backbone_lists_close_names():
    with pytest.raises(ConfigError, match=r"unknown backbone 'resnet181'; did you mean resnet18.*headstart backbones"):
        create_backbone("resnet181", weights="random")


def test_preprocessing_comes_from_the_weights_metadata():
    prep = preprocessing_for(default_weights("resnet50"))  # IMAGENET1K_V2: resize 232, crop 224
    assert (prep.input_size, prep.resize_size, prep.interpolation) == (224, 232, "bilinear")
    small = preprocessing_for(default_weights("resnet50"), image_size=112)
    assert (small.input_size, small.resize_size, small.mean) == (112, 116, prep.mean)
    assert preprocessing_for(default_weights("efficientnet_b0")).interpolation == "bicubic"


@pytest.mark.parametrize("name,size,message", [
    ("vit_b_16", 40, "not a multiple of 16"),
    ("inception_v3", 32, "cannot take 32x32 inputs"),
    ("maxvit_t", 64, "cannot take 64x64 inputs"),
])
def test_impossible_input_sizes_are_config_errors(name, size, message):
    with pytest.raises(ConfigError, match=message):
        create_backbone(name, weights="random", image_size=size)
