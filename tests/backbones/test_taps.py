"""Feature taps: several (layer, pool) features from one forward pass, and the rules for invalid combinations."""

import pytest
import torch

from headstart.backbones.registry import create_backbone
from headstart.backbones.taps import build_extractor, pool_features, pool_problem
from headstart.errors import ConfigError

X = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def resnet18():
    return create_backbone("resnet18", weights="random", image_size=32, seed=0)


@pytest.fixture(scope="module")
def vit():
    return create_backbone("vit_b_16", weights="random", image_size=32, seed=0)


def _calls(module) -> list:
    calls = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_plain_backbone_is_one_set_under_its_own_name(resnet18):
    taps, outputs = build_extractor(resnet18)
    assert [(o.name, o.layer, o.pool, o.dim, o.fingerprint_parts) for o in outputs] == \
        [("resnet18", "final", "default", 512, {})]
    with torch.inference_mode():
        assert torch.equal(taps(X)["resnet18"], resnet18.module(X))


def test_cnn_layers_and_pools_come_from_one_forward_pass(resnet18):
    taps, outputs = build_extractor(resnet18, layers=["final", "layer3"], pools=["default", "mean", "gem"])
    assert [(o.name, o.dim) for o in outputs] == [
        ("resnet18", 512), ("resnet18:mean", 512), ("resnet18:gem", 512),
        ("resnet18:layer3", 256), ("resnet18:layer3:mean", 256), ("resnet18:layer3:gem", 256)]
    assert outputs[5].fingerprint_parts == {"layer": "layer3", "pool": "gem"}
    assert outputs[5].attrs == {"backbone": "resnet18", "provider": "torchvision", "layer": "layer3", "pool": "gem"}
    calls = _calls(resnet18.module.layer1)
    with torch.inference_mode():
        out = taps(X)
    assert len(calls) == 1  # one forward pass for six feature sets
    assert list(out) == [o.name for o in outputs]
    assert all(t.shape == (3, o.dim) for t, o in zip(out.values(), outputs))
    assert torch.allclose(out["resnet18:mean"], out["resnet18"], atol=1e-5)  # resnet's own pool is the mean
    assert (out["resnet18:gem"] >= out["resnet18:mean"] - 1e-5).all()  # a power mean (p=3) is >= the mean
    with torch.inference_mode():
        layer3 = resnet18.module.layer3(resnet18.module.layer2(resnet18.module.layer1(resnet18.module.maxpool(
            resnet18.module.relu(resnet18.module.bn1(resnet18.module.conv1(X)))))))
    assert torch.allclose(out["resnet18:layer3"], layer3.mean((2, 3)), atol=1e-5)
    assert not resnet18.module._forward_hooks and not resnet18.module.layer3._forward_hooks  # no hooks left behind


def test_vit_token_pools(vit):
    taps, outputs = build_extractor(vit, layers=["final", "encoder.layers.encoder_layer_0"],
                                    pools=["default", "cls", "mean", "cls+mean"])
    dims = {o.name: o.dim for o in outputs}
    assert dims["vit_b_16:cls+mean"] == 1536 and dims["vit_b_16:encoder.layers.encoder_layer_0:mean"] == 768
    with torch.inference_mode():
        out = taps(X)
    assert torch.allclose(out["vit_b_16:cls"], out["vit_b_16"], atol=1e-5)  # torchvision's ViT feature is CLS
    assert torch.equal(out["vit_b_16:cls+mean"], torch.cat([out["vit_b_16:cls"], out["vit_b_16:mean"]], 1))


def test_pool_features_leaves_prefix_tokens_out_of_the_mean():
    tokens = torch.tensor([[[100.0], [50.0], [1.0], [3.0]]])  # cls, one register token, two patch tokens
    assert pool_features(tokens, "mean", layout="NLC", prefix_tokens=2).item() == 2.0
    assert pool_features(tokens, "cls", layout="NLC", prefix_tokens=2).item() == 100.0
    assert pool_features(tokens, "default", layout="NLC", prefix_tokens=0).item() == pytest.approx(38.5)
    nhwc = torch.arange(8.0).reshape(1, 2, 2, 2)  # channel c holds c, c+2, c+4, c+6
    assert pool_features(nhwc, "mean", layout="NHWC").tolist() == [[3.0, 4.0]]


@pytest.mark.parametrize("pool,layout,prefix,message", [
    ("cls", "NCHW", 0, "no class token; use default, mean or gem"),
    ("gem", "NLC", 1, "signed transformer tokens"),
    ("cls+mean", "NLC", 0, "has no class token; use mean"),
    ("mean", "NC", 0, "already pooled"),
])
def test_invalid_pool_layout_combinations(pool, layout, prefix, message):
    assert message in pool_problem(pool, layout=layout, prefix_tokens=prefix)


@pytest.mark.parametrize("layers,pools,message", [
    ([], ["cls"], "--pool cls cannot read resnet18 layer final: it is a CNN feature map with no class token"),
    (["layer9"], [], "resnet18 has no layer 'layer9'; did you mean layer4"),
    (["layer3", "layer3"], [], "--layer values repeat"),
    ([], ["max"], "--pool 'max' is unknown"),
])
def test_invalid_requests_are_one_line_usage_errors(resnet18, layers, pools, message):
    with pytest.raises(ConfigError, match=message) as info:
        build_extractor(resnet18, layers=layers, pools=pools)
    assert "\n" not in str(info.value)


def test_gem_on_vit_tokens_is_refused(vit):
    with pytest.raises(ConfigError, match="--pool gem cannot read vit_b_16 layer final: it holds signed"):
        build_extractor(vit, pools=["gem"])


def test_a_backbone_without_a_final_map_only_takes_the_default_pool_there():
    squeeze = create_backbone("squeezenet1_1", weights="random", image_size=32)
    with pytest.raises(ConfigError, match="does not expose its final feature map"):
        build_extractor(squeeze, pools=["mean"])
    _, outputs = build_extractor(squeeze, layers=["features"], pools=["gem"])
    assert [(o.name, o.dim) for o in outputs] == [("squeezenet1_1:features:gem", 512)]
