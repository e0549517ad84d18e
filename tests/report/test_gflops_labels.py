"""The report's GFLOPs labels come from the records (extraction and fine-tuning stamp them), so `compare` never
imports torch to look one up, nor scikit-learn for its ROC curves (issue 13's start-up target: they cost 4 s and
1.6 s of a report that needs neither)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from headstart.backbones.weights import torchvision_gflops
from headstart.cache.reader import FeatureCache
from headstart.evaluation.report.cost import row_gflops
from headstart.extract.config import ExtractConfig
from headstart.extract.runner import run_extract
from headstart.heads.runner import HeadsConfig, run_heads
from tests.heads.synthetic_cache import make_cache

REPO = Path(__file__).resolve().parents[2]


def test_torchvision_figures_and_none_elsewhere():
    assert torchvision_gflops("resnet18") == pytest.approx(1.814, abs=0.01)  # torchvision's metadata
    assert torchvision_gflops("timm:resnet18") is None and torchvision_gflops("no_such_model") is None


def test_extraction_stamps_the_set_and_heads_carry_it(phantom_dir, tmp_path):
    out = tmp_path / "c.h5"
    run_extract(data=str(phantom_dir), output=str(out), config=ExtractConfig(
        backbones=["resnet18"], weights="random", image_size=32, batch_size=16, workers=0))
    with FeatureCache(out) as cache:
        assert cache.feature_sets["resnet18"]["gflops"] == pytest.approx(1.814, abs=0.01)
    (record,) = run_heads(cache_path=out, runs_dir=tmp_path / "runs", progress=False,
                          config=HeadsConfig(heads=["logreg"], sweep="quick", n_boot=10, device="cpu"))
    assert record.config["gflops"] == pytest.approx(1.814, abs=0.01)


def test_compare_imports_neither_torch_nor_sklearn(tmp_path):
    cache = make_cache(tmp_path / "c.h5")  # features written by write_features: no backbone, no GFLOPs
    run_heads(cache_path=cache, runs_dir=tmp_path / "runs", progress=False,
              config=HeadsConfig(heads=["logreg", "knn"], sweep="quick", n_boot=10, device="cpu"))
    probe = ("import sys; from headstart.api import run_compare; "
             f"run_compare({str(tmp_path / 'runs')!r}, {str(tmp_path / 'report')!r}); "
             "loaded = [m for m in ('torch', 'torchvision', 'sklearn') if m in sys.modules]; "
             "assert not loaded, f'compare imported {loaded}'")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "report" / "report.html").is_file()


def test_a_record_without_the_field_is_looked_up(monkeypatch):
    class Ref:
        config = {"weights": "random"}

    class Row:
        reference, backbone = Ref(), "resnet18"

    assert row_gflops(Row()) == pytest.approx(1.814, abs=0.01)  # records from before the stamp
    Ref.config = {"weights": "external"}
    assert row_gflops(Row()) is None
    Ref.config = {"gflops": None}
    assert row_gflops(Row()) is None
