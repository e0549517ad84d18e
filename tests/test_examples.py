"""The examples run end to end, as a user runs them: a fresh interpreter in an empty working folder.

Both use tiny sizes and random weights; their wall time is measured in docs/guide/python.md, not asserted here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import headstart

ROOT = Path(__file__).resolve().parents[1]


def run_example(name: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE", "MPLBACKEND": "Agg"}
    run = subprocess.run([sys.executable, str(ROOT / "examples" / name)], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, f"{name} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run


def test_quickstart(tmp_path):
    run = run_example("quickstart.py", tmp_path)
    out = tmp_path / "quickstart-out"
    runs = headstart.load_runs(out / "runs")
    assert sorted((r.strategy, r.head) for r in runs) == [("cached-head", "knn"), ("cached-head", "linear"),
                                                          ("cached-head", "logreg"), ("finetune", None)]
    assert (out / "runs" / "report" / "report.html").is_file()
    assert headstart.cache.verify_cache(out / "features.h5") == []
    assert "my head: test AUROC" in run.stdout and "finetune_resnet18" in run.stdout


def test_bring_your_own_features(tmp_path):
    run = run_example("bring_your_own_features.py", tmp_path)
    out = tmp_path / "byof-out"
    assert headstart.cache.verify_cache(out / "embeddings.h5") == []
    runs = headstart.load_runs(out / "runs")
    assert [r.head for r in runs] == ["knn", "logreg"] and all(r.backbone == "my-model" for r in runs)
    assert (out / "runs" / "report" / "report.html").is_file()
    assert "cached-head_my-model_logreg_s0: test AUROC" in run.stdout


@pytest.mark.parametrize("name", ["quickstart.py", "bring_your_own_features.py"])
def test_examples_are_notebook_cells(name):
    """`# %%` cells open as a notebook in Jupyter (jupytext) and VS Code."""
    text = (ROOT / "examples" / name).read_text(encoding="utf-8")
    assert text.startswith("# %% [markdown]") and text.count("\n# %%") >= 5
