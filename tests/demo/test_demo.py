"""`headstart demo`: the quick pipeline end to end (slow here), and the folder checks that guard a rerun."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from headstart.cli import cli
from headstart.evaluation.records import read_records


def _one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    return lines[0]


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("precious", encoding="utf-8")
    line = _one_line_error(CliRunner().invoke(cli, ["demo", "-o", str(tmp_path), "--quick"]))
    assert str(tmp_path) in line and "-o DIR" in line
    assert (tmp_path / "thesis.tex").read_text(encoding="utf-8") == "precious"


def test_demo_refuses_a_file_as_output(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("x", encoding="utf-8")
    assert "is a file" in _one_line_error(CliRunner().invoke(cli, ["demo", "-o", str(target), "--quick"]))


@pytest.mark.slow  # about 1 minute alone on 2 CPU cores, 2-3 minutes when they are shared
def test_quick_demo_runs_every_stage_and_falls_back_to_random_weights(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HEADSTART_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no cached ImageNet weights: force the fallback
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "-o", str(out), "--quick"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "WARNING: ImageNet weights are not available" in result.output
    assert f"report: {out / 'report' / 'report.html'}" in result.output

    records = read_records(out / "runs")
    assert {r.strategy for r in records} == {"cached-head", "finetune"}
    assert {r.backbone for r in records if r.strategy == "cached-head"} == {"resnet18", "densenet121"}
    assert {r.dataset["manifest_hash"] for r in records} == {records[0].dataset["manifest_hash"]}  # same splits
    (finetune,) = [r for r in records if r.strategy == "finetune"]
    assert finetune.config["weights"] == "random" and len(finetune.history) == 2
    for name in ("report.html", "report.md", "summary.json"):
        assert (out / "report" / name).stat().st_size > 0
    assert "randomly initialised weights" in (out / "report" / "report.md").read_text(encoding="utf-8")
