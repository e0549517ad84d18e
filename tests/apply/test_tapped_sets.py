"""A head trained on a `--layer`/`--pool` set is applied to THAT set: predict and export rebuild its tap.

One float16 cache of the phantom set holds resnet18's plain feature and three tapped sets (32 px, random weights)
and one timm ViT's class-token set; a logreg head is fitted on each tapped set. `predict` on the images must give
the probabilities the head gives on the cache's own rows (`predict --cache`, no backbone), with either engine,
within float16 storage tolerance; the head applied to the plain set's rows must not (so the check has teeth).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from tests.apply.conftest import read_table
from tests.reliability.conftest import invoke

TAPPED = ("resnet18:gem", "resnet18:layer3", "resnet18:layer3:gem")
VIT = "timm:vit_tiny_patch16_224:cls"
# Measured: 0 with the engine that extracted the cache (onnxruntime, auto on CPU), <= 8e-5 with torch (a float16
# feature landing across a rounding boundary); the head on a wrong set's rows is off by ~1 (checked below).
TOLERANCE = 1e-3


@pytest.fixture(scope="session")
def tapped(phantom_dir, tmp_path_factory) -> dict:
    """{"cache": CACHE, "data": DATA, set name: run folder} for every tapped set (and the ViT's when timm is here)."""
    from headstart.api import run_extract, run_heads

    root = tmp_path_factory.mktemp("tapped")
    cache = root / "c.h5"
    run_extract(phantom_dir, cache, backbones=["resnet18"], layers=["final", "layer3"], pools=["default", "gem"],
                weights="random", image_size=32, batch_size=16, workers=0, device="cpu")
    sets = list(TAPPED)
    try:
        import timm  # noqa: F401
    except ImportError:
        pass
    else:
        run_extract(phantom_dir, cache, backbones=["timm:vit_tiny_patch16_224"], pools=["cls"], weights="random",
                    image_size=32, batch_size=16, workers=0, device="cpu")
        sets.append(VIT)
    run_heads(cache, root / "runs", feature_sets=sets, heads=["logreg"], sweep="quick", n_boot=20, device="cpu",
              progress=False)
    out = {"cache": cache, "data": phantom_dir}
    for head in (root / "runs").glob("*/head.json"):
        out[json.loads(head.read_text())["feature_set"]["name"]] = head.parent
    assert set(sets) <= set(out), sorted(out)
    return out


def probabilities(path: Path) -> dict[str, np.ndarray]:
    rows = read_table(path)
    columns = [c for c in rows[0] if c.startswith("proba_")]
    return {row["id"]: np.array([float(row[c]) for c in columns]) for row in rows}


def from_cache(run: Path, cache: Path, out: Path) -> dict[str, np.ndarray]:
    """The head on the cache's rows of its own set (no backbone runs)."""
    result = invoke("predict", str(run), "-o", str(out), "--cache", str(cache), "--n-boot", "20")
    assert result.exit_code == 0, result.output
    return probabilities(out)


def from_images(run: Path, data: Path, out: Path, *extra: str) -> dict[str, np.ndarray]:
    result = invoke("predict", str(run), str(data), "-o", str(out), "--workers", "0", "--n-boot", "20",
                    "--device", "cpu", *extra)
    assert result.exit_code == 0, result.output
    return probabilities(out)


def worst(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
@pytest.mark.parametrize("name", TAPPED)
def test_predict_computes_the_tapped_set(tapped, tmp_path, name, engine):
    if engine == "onnxruntime":
        pytest.importorskip("onnxruntime")
    run = tapped[name]
    expected = from_cache(run, tapped["cache"], tmp_path / "cache.csv")
    got = from_images(run, tapped["data"], tmp_path / "images.csv", "--engine", engine)
    assert worst(got, expected) <= TOLERANCE


def test_predict_computes_a_timm_class_token_set(tapped, tmp_path):
    if VIT not in tapped:
        pytest.skip("timm is not installed")
    run = tapped[VIT]
    expected = from_cache(run, tapped["cache"], tmp_path / "cache.csv")
    assert worst(from_images(run, tapped["data"], tmp_path / "images.csv"), expected) <= TOLERANCE


def test_the_plain_set_would_give_other_probabilities(tapped, tmp_path):
    """The check above can fail: the layer3 gem head on the layer3 mean-pooled set's rows is far off its own rows
    (at 32 px resnet18's final map is 1 x 1, where gem and mean agree; layer3's is 2 x 2)."""
    from headstart.cache.reader import FeatureCache
    from headstart.heads.fitting import full_proba
    from headstart.heads.persist import read_head

    run = tapped["resnet18:layer3:gem"]
    expected = from_cache(run, tapped["cache"], tmp_path / "cache.csv")
    head = read_head(run)
    with FeatureCache(tapped["cache"]) as cache:
        X, _ = cache.load("resnet18:layer3")
        ids = [str(i) for i in cache.ids]
    wrong = dict(zip(ids, full_proba(head.estimator, X.astype(np.float32), len(head.classes))))
    assert worst(wrong, expected) > 10 * TOLERANCE


def test_default_engine_on_cpu_is_onnxruntime_and_is_recorded(tapped, tmp_path, caplog):
    pytest.importorskip("onnxruntime")
    from headstart.api import run_predict

    with caplog.at_level(logging.INFO, logger="headstart"):
        result = run_predict(tapped["resnet18:layer3:gem"], tapped["data"], tmp_path / "p.csv", device="cpu",
                             workers=0, n_boot=20, progress=False)
    assert result.engine == "onnxruntime"
    assert any("engine onnxruntime" in r.getMessage() and "first rows within" in r.getMessage()
               for r in caplog.records)
    assert json.loads(Path(result.metrics_path).read_text())["engine"] == "onnxruntime"
    forced = run_predict(tapped["resnet18:layer3:gem"], tapped["data"], tmp_path / "t.csv", device="cpu",
                         workers=0, n_boot=20, engine="torch", progress=False)
    assert forced.engine == "torch"


@pytest.mark.parametrize("suffix", [".onnx", ".pt2"])
def test_export_of_a_tapped_run_matches_predict(tapped, tmp_path, suffix):
    if suffix == ".onnx":
        pytest.importorskip("onnxruntime")
    run = tapped["resnet18:layer3:gem"]
    model = tmp_path / f"model{suffix}"
    result = invoke("export", str(run), "-o", str(model))
    assert result.exit_code == 0, result.output
    card = json.loads(model.with_suffix(".json").read_text())
    assert card["feature_set"]["layer"] == "layer3" and card["feature_set"]["pool"] == "gem"
    from_run = from_images(run, tapped["data"], tmp_path / "run.csv", "--engine", "torch")
    from_model = from_images(model, tapped["data"], tmp_path / "model.csv")
    assert worst(from_model, from_run) <= 1e-3
