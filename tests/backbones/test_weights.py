"""Weight resolution: imagenet through the (test-local) torch hub cache, random, and local state-dict files."""

import hashlib
import io
import os
import socket

import pytest
import torch
import torchvision
from torch import nn

from headstart.backbones.registry import create_backbone, create_model
from headstart.backbones import weights
from headstart.backbones.weights import hub_checkpoint_path, resolve_weights
from headstart.errors import ConfigError, WeightsError


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _reference_features(state_dict: dict, x: torch.Tensor) -> torch.Tensor:
    """What a torchvision resnet18 with these weights computes before its fc layer."""
    model = torchvision.models.resnet18()
    model.load_state_dict(state_dict)
    model.fc = nn.Identity()
    with torch.inference_mode():
        return model.eval()(x)


@pytest.fixture(scope="module")
def resnet18_state() -> dict:
    torch.manual_seed(5)
    return torchvision.models.resnet18().state_dict()


X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_offline_imagenet_without_cached_file_names_path_and_alternatives(offline_hub):
    expected = offline_hub / "resnet18-f37072fd.pth"
    with pytest.raises(WeightsError) as info:
        create_backbone("resnet18", weights="imagenet", image_size=32)
    message = str(info.value)
    assert str(expected) in message and "--weights random" in message and "--weights PATH" in message
    assert "\n" not in message


def test_imagenet_loads_from_the_hub_cache(offline_hub, resnet18_state):
    path = offline_hub / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.save(resnet18_state, path)
    assert hub_checkpoint_path(torchvision.models.ResNet18_Weights.DEFAULT) == path

    backbone = create_backbone("resnet18", weights="imagenet", image_size=32)
    assert backbone.weights_tag == "imagenet:ResNet18_Weights.IMAGENET1K_V1"
    assert backbone.weights_sha256 == _sha256(path)
    assert backbone.preprocessing.resize_size == round(32 * 256 / 224)
    assert not any(p.requires_grad for p in backbone.module.parameters()) and not backbone.module.training
    with torch.inference_mode():
        assert torch.allclose(backbone.module(X), _reference_features(resnet18_state, X))


def test_imagenet_member_can_be_chosen_and_is_checked(offline_hub):
    with pytest.raises(WeightsError, match="resnet50-0676ba61.pth"):  # V1, not the DEFAULT V2 file
        create_backbone("resnet50", weights="imagenet:IMAGENET1K_V1")
    with pytest.raises(ConfigError, match="expected one of imagenet:IMAGENET1K_V1, imagenet:IMAGENET1K_V2"):
        create_backbone("resnet50", weights="imagenet:IMAGENET1K_V9")


@pytest.mark.parametrize("wrap", ["plain", "checkpoint", "ddp"])
def test_local_state_dict_files(tmp_path, resnet18_state, wrap):
    state = dict(resnet18_state)
    state["fc.weight"], state["fc.bias"] = torch.zeros(2, 512), torch.zeros(2)  # a 2-class fine-tune: ignored
    if wrap == "ddp":
        state = {f"module.{k}": v for k, v in state.items()}
    obj = {"model": state, "epoch": 3} if wrap == "checkpoint" else state
    path = tmp_path / "ft.pth"
    torch.save(obj, path)

    backbone = create_backbone("resnet18", weights=str(path), image_size=32)
    assert backbone.weights_tag == "file:ft.pth"
    assert backbone.weights_sha256 == _sha256(path)
    with torch.inference_mode():
        assert torch.allclose(backbone.module(X), _reference_features(resnet18_state, X))


def test_finetuned_headstart_model_loads_back_as_a_backbone(tmp_path):
    model, _, _ = create_model("resnet18", num_classes=2, weights="random", image_size=32, seed=3)
    with torch.no_grad():
        model.backbone.layer4[0].conv1.weight.mul_(2)  # "training" changed it
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": model.state_dict()}, path)
    backbone = create_backbone("resnet18", weights=str(path), image_size=32)
    with torch.inference_mode():
        assert torch.equal(backbone.module(X), model.eval().backbone(X))


def test_missing_backbone_keys_are_refused(tmp_path, resnet18_state):
    path = tmp_path / "partial.pth"
    torch.save({k: v for k, v in resnet18_state.items() if not k.startswith("layer4.")}, path)
    with pytest.raises(WeightsError, match=r"partial\.pth do not fit resnet18: missing keys \['layer4"):
        create_backbone("resnet18", weights=str(path))


def test_wrong_architecture_is_refused(tmp_path, resnet18_state):
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18_state, path)
    with pytest.raises(WeightsError, match="do not fit resnet34"):
        create_backbone("resnet34", weights=str(path))


def test_garbage_file_is_refused(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(os.urandom(256))
    with pytest.raises(WeightsError, match=r"garbage\.pth.*only plain state dicts"):
        create_backbone("resnet18", weights=str(path))


class _Exploit:
    """Unpickling this would run code; weights_only=True must refuse it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": _Exploit(marker)}, path)
    with pytest.raises(WeightsError, match=r"evil\.pth.*weights_only=True"):
        create_backbone("resnet18", weights=str(path))
    assert not marker.exists()


def test_non_state_dict_pickle_is_refused(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(WeightsError, match="not a state dict"):
        resolve_weights("resnet18", str(path))


def test_missing_weights_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="neither imagenet, random nor an existing file"):
        create_backbone("resnet18", weights=str(tmp_path / "nope.pth"))


class FakeResponse(io.BytesIO):
    """What urlopen returns, for a test that never touches the network."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def test_failed_download_names_the_reason(offline_hub, monkeypatch):
    monkeypatch.delenv("HEADSTART_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")  # either switch keeps every provider offline

    def refuse(request, timeout=None):
        raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(weights, "urlopen", refuse)
    with pytest.raises(WeightsError, match=r"could not be downloaded \(OSError: \[Errno 101\] Network is unreachable\)"):
        create_backbone("resnet18", weights="imagenet")
    assert list(offline_hub.iterdir()) == []  # no partial file left behind


def test_download_has_its_own_timeout_and_checks_the_hash_before_landing(tmp_path, monkeypatch):
    data = b"weights" * 1000
    prefix = hashlib.sha256(data).hexdigest()[:8]
    calls = []

    def fake_urlopen(request, timeout=None):
        calls.append((request.full_url, timeout, socket.getdefaulttimeout()))
        return FakeResponse(data)

    monkeypatch.setattr(weights, "urlopen", fake_urlopen)
    good = tmp_path / f"net-{prefix}.pth"
    assert weights._download(f"https://example.invalid/{good.name}", good) is None
    assert good.read_bytes() == data
    # The timeout is this request's; the process-wide default (None here) is never touched.
    assert calls == [(f"https://example.invalid/{good.name}", weights.DOWNLOAD_TIMEOUT_S, None)]
    assert socket.getdefaulttimeout() is None

    bad = tmp_path / "net-0000abcd.pth"
    reason = weights._download(f"https://example.invalid/{bad.name}", bad)
    assert reason is not None and "does not start with 0000abcd" in reason
    assert sorted(p.name for p in tmp_path.iterdir()) == [good.name]  # a file failing its hash never lands


def test_download_lands_in_the_hub_cache(offline_hub, monkeypatch, resnet18_state):
    monkeypatch.delenv("HEADSTART_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")  # either switch keeps every provider offline
    calls = []

    def fake_download(url, path):
        calls.append((url, path))
        path.parent.mkdir(parents=True)
        torch.save(resnet18_state, path)

    monkeypatch.setattr(weights, "_download", fake_download)
    backbone = create_backbone("resnet18", weights="imagenet", image_size=32)
    assert calls == [(torchvision.models.ResNet18_Weights.DEFAULT.url, offline_hub / "resnet18-f37072fd.pth")]
    assert backbone.weights_sha256 == _sha256(offline_hub / "resnet18-f37072fd.pth")
    create_backbone("resnet18", weights="imagenet", image_size=32)
    assert len(calls) == 1  # the second time it is cached


def test_hf_hub_offline_also_keeps_torchvision_offline(offline_hub, monkeypatch):
    monkeypatch.delenv("HEADSTART_OFFLINE")
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("tried to download"))
    with pytest.raises(WeightsError, match=r"could not be downloaded \(HF_HUB_OFFLINE=1\)"):
        create_backbone("resnet18", weights="imagenet")


def test_safetensors_state_dicts_are_accepted(tmp_path, resnet18_state):
    save_file = pytest.importorskip("safetensors.torch", reason="safetensors is not installed").save_file
    path = tmp_path / "r18.safetensors"
    save_file(resnet18_state, path)
    backbone = create_backbone("resnet18", weights=str(path), image_size=32)
    assert backbone.weights_tag == "file:r18.safetensors" and backbone.weights_sha256 == _sha256(path)
    with torch.inference_mode():
        assert torch.allclose(backbone.module(X), _reference_features(resnet18_state, X))
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="cannot read safetensors file"):
        create_backbone("resnet18", weights=str(path), image_size=32)
