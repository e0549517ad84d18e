"""The public surface: names resolve lazily, `--help` and cache reading stay free of torch, logging is silent."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import headstart

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "torchvision", "sklearn", "matplotlib")


def _python(*argv: str) -> subprocess.CompletedProcess:
    """A fresh interpreter on this checkout."""
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


def imported_by(argv: list[str]) -> set[str]:
    """Top-level packages `python -X importtime ARGV` imports (read from its import-time report)."""
    run = _python("-X", "importtime", *argv)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [line for line in run.stderr.splitlines() if line.startswith("import time:") and "|" in line]
    assert len(lines) > 20, run.stderr[-2000:]  # the report was read
    return {line.rsplit("|", 1)[1].strip().split(".")[0] for line in lines}


@pytest.mark.parametrize("argv", [["--help"], ["heads", "--help"], ["extract", "--help"], ["finetune", "--help"],
                                  ["compare", "--help"], ["cache", "info", "--help"], ["curve", "--help"],
                                  ["screen", "--help"], ["predict", "--help"], ["export", "--help"]])
def test_help_imports_no_torch(argv):
    modules = imported_by(["-m", "headstart", *argv])
    assert "headstart" in modules and "click" in modules
    assert not modules & set(HEAVY), f"`headstart {' '.join(argv)}` imported {sorted(modules & set(HEAVY))}"


def test_reading_a_cache_and_runs_imports_no_torch(tmp_path):
    from tests.heads.synthetic_cache import make_cache

    cache = make_cache(tmp_path / "c.h5", n=40, dim=4)
    code = (f"import sys, headstart\n"
            f"c = headstart.open_cache({str(cache)!r})\n"
            f"X, y, ids = c.arrays('resnet18', 'train')\n"
            f"from headstart.evaluation import choose_threshold, evaluate\n"
            f"print(len(y), sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    run = _python("-c", code)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["24", "[]"]


def test_public_names_resolve_lazily_and_are_listed():
    for name in headstart.__all__:
        assert getattr(headstart, name) is not None
        assert name in dir(headstart)
    assert headstart.run_heads is headstart.api.run_heads
    assert headstart.cache.write_features.__module__ == "headstart.cache.external"
    with pytest.raises(AttributeError, match="no attribute 'run_nothing'"):
        headstart.run_nothing  # noqa: B018


def test_heads_are_importable_from_the_package_as_the_readme_says():
    from headstart.heads import KNNHead, LinearHead, LogRegHead, MLPHead
    from headstart.heads.knn import KNNHead as knn
    from headstart.heads.logreg import LogRegHead as logreg
    from headstart.heads.torch_heads import LinearHead as linear, MLPHead as mlp

    assert (LogRegHead, LinearHead, MLPHead, KNNHead) == (logreg, linear, mlp, knn)
    from headstart.heads import load_head
    from headstart.heads.persist import load_head as persist_load_head

    assert load_head is persist_load_head
    import headstart.heads as heads

    public = {"LogRegHead", "LinearHead", "MLPHead", "KNNHead", "HEADS", "load_head"}
    assert public <= set(heads.__all__) <= set(dir(heads))
    assert heads.HEADS == ("logreg", "linear", "mlp", "knn")


def test_library_logging_is_silent_until_configured():
    code = ("import logging, headstart\n"
            "logging.getLogger('headstart.cache.view').warning('should not show')\n"
            "logging.basicConfig()\n"
            "logging.getLogger('headstart.cache.view').warning('shows once configured')\n")
    run = _python("-c", code)
    assert run.returncode == 0, run.stderr
    assert "should not show" not in run.stderr and "shows once configured" in run.stderr


def test_library_progress_bars_use_tqdm_auto():
    """tqdm.auto renders as a widget in notebooks; plain tqdm prints raw carriage returns there."""
    offenders = []
    for path in (ROOT / "headstart").rglob("*.py"):
        if "cli" in path.relative_to(ROOT / "headstart").parts:
            continue  # the CLI writes to a terminal
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "tqdm" or (
                    isinstance(node, ast.Import) and any(a.name == "tqdm" for a in node.names)):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"import tqdm.auto instead of tqdm in {offenders}"
