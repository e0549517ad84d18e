"""The promise that matters: `predict` on a run's test images reproduces the run's recorded test probabilities.

For a cached head the backbone is rebuilt from the head's feature-set spec and the features are recomputed from
the images; a float16 cache rounds features, so the tolerance follows the cache's dtype. Exported models (ONNX,
.pt2) must give the table `predict RUN` gives, within 1e-3.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.apply.conftest import HEAD_KINDS, copy_run, head_run, read_table, record_decisions, record_vs_table
from tests.reliability.conftest import invoke

# float32 cache: the recomputed features are the cached ones; float16: predict rounds as the cache did, but a
# recomputed feature can round to the other side of a float16 step (the cached rows themselves: 1e-5 below).
TOLERANCE = {"float32": 1e-4, "float16": 1e-2}


def predict(run, data, out, *extra) -> list[dict]:
    result = invoke("predict", str(run), str(data), "-o", str(out), "--workers", "0", "--n-boot", "20",
                    "--device", "cpu", *extra)
    assert result.exit_code == 0, result.output
    return read_table(out)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_cached_head_reproduces_the_record(runs, tmp_path, dtype, kind):
    run = head_run(runs, dtype, kind)
    table = predict(run, runs["data"], tmp_path / "p.csv")
    expected, got, rows = record_vs_table(run, table)
    assert np.abs(got - expected).max() <= TOLERANCE[dtype]
    assert [row["prediction"] for row in rows] == record_decisions(run)
    assert all(row["label"] == row["id"].split("/")[-2] for row in table)  # ids are DATA-relative paths
    assert len(table) == sum(1 for p in runs["data"].rglob("*.jpeg"))  # every image, not only the test split
    assert (tmp_path / "p.metrics.json").is_file()


def test_head_moved_elsewhere_still_predicts(runs, tmp_path):
    """A run folder is self-contained: copied away from RUNS and its cache, it predicts the same."""
    run = copy_run(head_run(runs, "float32", "mlp"), tmp_path)
    expected, got, _ = record_vs_table(run, predict(run, runs["data"], tmp_path / "p.csv"))
    assert np.abs(got - expected).max() <= 1e-4


def test_finetune_reproduces_the_record(runs, tmp_path):
    run = runs["finetune"]
    expected, got, rows = record_vs_table(run, predict(run, runs["data"], tmp_path / "p.csv"))
    assert np.abs(got - expected).max() <= 1e-4
    assert [row["prediction"] for row in rows] == record_decisions(run)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_cached_features_give_the_record_exactly(runs, tmp_path, kind, dtype):
    """--cache CACHE --split test: the head on the cached test rows, no backbone run. On a float16 cache too: a
    saved head holds what was evaluated (kNN's reference rows stay float32), so the record is reproduced."""
    run = head_run(runs, dtype, kind)
    cache = runs["cache32" if dtype == "float32" else "cache16"]
    result = invoke("predict", str(run), "-o", str(tmp_path / "p.csv"), "--cache", str(cache), "--split",
                    "test", "--n-boot", "20")
    assert result.exit_code == 0, result.output
    table = read_table(tmp_path / "p.csv")
    expected, got, rows = record_vs_table(run, table)
    assert len(table) == len(expected)
    assert np.abs(got - expected).max() <= 1e-5
    assert [row["prediction"] for row in rows] == record_decisions(run)


@pytest.mark.parametrize("which", ["logreg", "knn", "finetune"])
def test_onnx_model_predicts_like_its_run(runs, tmp_path, which):
    pytest.importorskip("onnxruntime")
    run = runs["finetune"] if which == "finetune" else head_run(runs, "float16", which)
    result = invoke("export", str(run), "-o", str(tmp_path / "model.onnx"))
    assert result.exit_code == 0, result.output
    assert "max difference from PyTorch" in result.output
    from_run = predict(run, runs["data"], tmp_path / "run.csv")
    from_model = predict(tmp_path / "model.onnx", runs["data"], tmp_path / "model.csv")
    assert [r["id"] for r in from_model] == [r["id"] for r in from_run]
    columns = [c for c in from_run[0] if c.startswith("proba_")]
    a = np.array([[float(r[c]) for c in columns] for r in from_run])
    b = np.array([[float(r[c]) for c in columns] for r in from_model])
    assert np.abs(a - b).max() <= 1e-3
    _, got, _ = record_vs_table(run, from_model)
    assert got.shape[1] == len(columns)


def test_pt2_model_predicts_like_its_run(runs, tmp_path):
    run = runs["finetune"]
    result = invoke("export", str(run), "-o", str(tmp_path / "model.pt2"))
    assert result.exit_code == 0, result.output
    expected, got, rows = record_vs_table(run, predict(tmp_path / "model.pt2", runs["data"], tmp_path / "m.csv"))
    assert np.abs(got - expected).max() <= 1e-3
    assert [row["prediction"] for row in rows] == record_decisions(run)
