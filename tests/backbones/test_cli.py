"""`headstart backbones` through click's CliRunner."""

import json

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
