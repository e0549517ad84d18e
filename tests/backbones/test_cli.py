"""`headstart backbones` through click's CliRunner."""

import json

import pytest
import torch
from click.testing import CliRunner

from headstart.cli import cli


def test_backbones_table():
    result = CliRunner().invoke(cli, ["backbones"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["name", "dim", "params"]
    row = next(line for line in lines if line.startswith("resnet18 "))
    assert row.split()[1:5] == ["512", "11.7", "1.81", "69.8"]
    assert "IMAGENET1K_V1*" in row and row.endswith("no")


def test_backbones_json_reports_the_hub_cache(offline_hub):
    offline_hub.mkdir(parents=True)
    torch.save({}, offline_hub / "resnet18-f37072fd.pth")
    result = CliRunner().invoke(cli, ["backbones", "resnet18", "densenet121", "--json"])
    assert result.exit_code == 0, result.output
    records = {r["name"]: r for r in json.loads(result.output)}
    assert records["resnet18"]["num_features"] == 512 and records["resnet18"]["cached"] is True
    assert records["densenet121"]["num_features"] == 1024 and records["densenet121"]["cached"] is False
    assert records["densenet121"]["default_weights"] == "imagenet:DenseNet121_Weights.IMAGENET1K_V1"


def test_backbones_unknown_name_is_a_usage_error():
    result = CliRunner().invoke(cli, ["backbones", "resnet181"])
    assert result.exit_code == 2
    assert "unknown backbone 'resnet181'; did you mean resnet18" in result.output
    assert "Traceback" not in result.output


def _hide(monkeypatch, package: str) -> None:
    """Make `package` look uninstalled to the provider check (the import system itself is left alone)."""
    import headstart.backbones.providers as providers

    real = providers.importlib.util.find_spec
    monkeypatch.setattr(providers.importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))


def test_a_missing_extra_exits_1_with_the_pip_command(monkeypatch):
    _hide(monkeypatch, "timm")
    for args in (["backbones", "timm:resnet18"], ["backbones", "--provider", "timm"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1, result.output
        assert result.output.strip() == "Error: timm is not installed: pip install 'headstart[timm]'"


def test_the_default_list_names_missing_providers(monkeypatch):
    for package in ("timm", "torchxrayvision", "transformers"):
        _hide(monkeypatch, package)
    result = CliRunner().invoke(cli, ["backbones"])
    assert result.exit_code == 0, result.output
    assert "not installed: timm (pip install 'headstart[timm]'), xrv (pip install 'headstart[xrv]')" in result.output
    assert "timm:" not in result.output.split("not installed")[0]


def test_timm_filter_lists_matching_models_with_their_facts():
    pytest.importorskip("timm", reason="timm is not installed (pip install 'headstart[timm]')")
    result = CliRunner().invoke(cli, ["backbones", "--provider", "timm", "--filter", "vit_small*dinov2*"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()[2:] if line.strip()]
    assert [r[0] for r in rows] == ["timm:vit_small_patch14_dinov2", "timm:vit_small_patch14_reg4_dinov2"]
    assert rows[0][1:3] == ["384", "22.1"] and rows[0][4] == "-" and rows[0][5] == "lvd142m*"


def test_unknown_timm_name_exits_2_with_close_names():
    pytest.importorskip("timm", reason="timm is not installed (pip install 'headstart[timm]')")
    result = CliRunner().invoke(cli, ["backbones", "timm:convnext_atoo"])
    assert result.exit_code == 2
    assert "unknown backbone 'timm:convnext_atoo'; did you mean timm:convnext_atto" in result.output
