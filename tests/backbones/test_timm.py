"""timm provider: preprocessing from its data config, hub-cache and file weights, sizes, names, last stage."""

import hashlib

import pytest
import torch

from headstart.backbones.registry import create_backbone, create_model, split_parameters
from headstart.backbones.taps import build_extractor
from headstart.errors import ConfigError, WeightsError

timm = pytest.importorskip("timm", reason="timm is not installed (pip install 'headstart[timm]')")
from safetensors.torch import save_file  # noqa: E402 - timm depends on safetensors

from headstart.backbones.providers.timm import preprocessing_from_data_config  # noqa: E402

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_preprocessing_is_timms_data_config():
    data = timm.data.resolve_data_config({}, pretrained_cfg=timm.get_pretrained_cfg("resnet18").to_dict())
    prep = preprocessing_from_data_config(data)
    assert (prep.input_size, prep.resize_size, prep.interpolation) == (224, 235, "bicubic")  # crop_pct 0.95
    assert prep.mean == (0.485, 0.456, 0.406) and prep.channels == 3
    assert preprocessing_from_data_config(data, 64).resize_size == 67  # floor(64 / 0.95), as timm's transforms


def test_imagenet_weights_come_from_the_hub_cache(fake_hub):
    torch.manual_seed(3)
    reference = timm.create_model("resnet18").eval()  # a stand-in for timm/resnet18.a1_in1k, with its fc
    snapshot = fake_hub("timm/resnet18.a1_in1k",
                        {"model.safetensors": lambda d: save_file(reference.state_dict(), d / "model.safetensors")})
    backbone = create_backbone("timm:resnet18", weights="imagenet", image_size=32)
    assert backbone.weights_tag == "imagenet:resnet18.a1_in1k"
    assert backbone.weights_sha256 == hashlib.sha256((snapshot / "model.safetensors").read_bytes()).hexdigest()
    assert backbone.fingerprint_parts["pretrained_tag"] == "a1_in1k"
    with torch.inference_mode():
        expected = reference.forward_head(reference.forward_features(X), pre_logits=True)
        assert torch.allclose(backbone.module(X), expected, atol=1e-5)


def test_a_fine_tune_saved_as_safetensors_loads_as_weights_path(tmp_path):
    model, _, _ = create_model("timm:convnext_atto", num_classes=2, weights="random", image_size=32, seed=4)
    path = tmp_path / "ft.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)  # backbone.model.* + head.*
    backbone = create_backbone("timm:convnext_atto", weights=str(path), image_size=32)
    assert backbone.weights_tag == "file:ft.safetensors"
    model.eval()
    with torch.inference_mode():
        assert torch.allclose(backbone.module(X), model.backbone(X), atol=1e-6)


def test_weights_for_another_model_are_refused(tmp_path):
    torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(WeightsError, match=r"do not fit timm:resnet34: missing keys \['layer1.2"):
        create_backbone("timm:resnet34", weights=str(tmp_path / "r18.pth"), image_size=32)


def test_vit_sizes_are_rebuilt_for_whole_patches_only():
    backbone = create_backbone("timm:vit_tiny_patch16_224", weights="random", image_size=48)
    assert backbone.module.model.patch_embed.img_size == (48, 48)
    with pytest.raises(ConfigError, match="cuts images into 16-px patches; --image-size 40 is not a multiple of 16"):
        create_backbone("timm:vit_tiny_patch16_224", weights="random", image_size=40)


def test_unknown_names_and_tags_are_usage_errors():
    with pytest.raises(ConfigError, match="unknown backbone 'timm:convnext_atoo'; did you mean timm:convnext_atto"):
        create_backbone("timm:convnext_atoo", weights="random")
    with pytest.raises(ConfigError, match="timm:resnet18 has no pretrained tag 'nope'; expected one of a1_in1k"):
        create_backbone("timm:resnet18.nope", weights="random")


def test_vit_block_taps_and_last_stage():
    backbone = create_backbone("timm:vit_tiny_patch16_224", weights="random", image_size=32)
    taps, outputs = build_extractor(backbone, layers=["final", "blocks.1"], pools=["cls", "cls+mean"])
    assert [(o.name, o.dim) for o in outputs] == [
        ("timm:vit_tiny_patch16_224:cls", 192), ("timm:vit_tiny_patch16_224:cls+mean", 384),
        ("timm:vit_tiny_patch16_224:blocks.1:cls", 192), ("timm:vit_tiny_patch16_224:blocks.1:cls+mean", 384)]
    with torch.inference_mode():
        out = taps(X)
    assert torch.allclose(out["timm:vit_tiny_patch16_224:cls"], backbone.module(X), atol=1e-5)  # timm pools CLS
    model, _, _ = create_model("timm:resnet18", num_classes=2, weights="random", image_size=32)
    last = {id(p) for p in split_parameters(model, "timm:resnet18")["last_stage"]}
    assert last == {id(p) for p in model.backbone.model.layer4.parameters()}
