"""The stored short list of `headstart backbones` says what the live providers say, and is used without torch."""

import json
import subprocess
import sys

import pytest

from headstart.backbones import catalog, providers
from headstart.backbones.registry import backbone_info, list_backbones, recommended_backbones

STORED = json.loads(catalog.CATALOG_FILE.read_text())["providers"]
CURRENT = [p for p in STORED if providers.is_installed(p) and catalog.recommended(p) is not None]


@pytest.mark.parametrize("provider", CURRENT)
def test_catalogue_matches_the_live_provider(provider):
    assert catalog.recommended(provider) == recommended_backbones(provider)
    if provider != "hf":
        assert catalog.count(provider) == len(list_backbones(provider))
    for name in catalog.recommended(provider)[:2]:  # one meta build each: two rows per provider keep this fast
        assert catalog.stored_info(name) == backbone_info(name)


@pytest.mark.skipif("torchvision" not in CURRENT, reason="the catalogue was made with another torchvision")
def test_torchvision_row_sees_weights_appear_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert catalog.stored_info("resnet18")["cached"] is False
    file = tmp_path / "hub" / "checkpoints" / STORED["torchvision"]["rows"]["resnet18"]["probe"]["torch_hub"]
    file.parent.mkdir(parents=True)
    file.write_bytes(b"x")
    info = catalog.stored_info("resnet18")
    assert info["cached"] is True and info["file"] == str(file) == backbone_info("resnet18")["file"]


def test_catalogue_is_current_for_the_pinned_environment():
    """Regenerate with `python -m headstart.backbones.catalog` when a provider's version changes."""
    assert "torchvision" in CURRENT


def test_another_provider_version_is_described_live(monkeypatch):
    monkeypatch.setattr(providers, "package_version", lambda provider: "0.0.0-other")
    assert catalog.recommended("torchvision") is None and catalog.stored_info("resnet18") is None


def test_default_listing_imports_no_model_code():
    code = ("import sys; from click.testing import CliRunner; from headstart.cli import cli; "
            "r = CliRunner().invoke(cli, ['backbones']); assert r.exit_code == 0, r.output; "
            "assert 'resnet18' in r.output; print(sorted(m for m in ('torch', 'timm', 'torchxrayvision', "
            "'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_backbone_info_falls_back_to_the_live_registry(monkeypatch):
    stored = catalog.backbone_info("resnet18")
    monkeypatch.setattr(providers, "package_version", lambda provider: "0.0.0-other")
    assert catalog.stored_info("resnet18") is None
    assert catalog.backbone_info("resnet18") == backbone_info("resnet18") == stored
