"""`headstart.cache.write_features`: features made elsewhere become a cache that every command accepts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import headstart
from headstart.cache import write_features
from headstart.cli import cli
from headstart.errors import CacheMismatchError, ConfigError, DataError, HeadstartError

N = 90


def inputs(seed: int = 0, n: int = N, dim: int = 10) -> dict:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(size=(n, dim)).astype(np.float32)
    X[:, 0] += 2.0 * y
    return dict(features={"cxr-foundation": X}, labels=np.where(y == 1, "PNEUMONIA", "NORMAL"),
                ids=[f"scan_{i:03d}.dcm" for i in range(n)],
                splits=[("train", "train", "train", "val", "test")[i % 5] for i in range(n)],
                classes=["NORMAL", "PNEUMONIA"], groups=[f"patient{i // 3}" for i in range(n)])


def test_cache_is_accepted_by_info_verify_heads_and_open_cache(tmp_path):
    path = write_features(tmp_path / "emb.h5", **inputs(), backbones={"cxr-foundation": "google/cxr-foundation"},
                          source={"model": "CXR Foundation", "file": "emb.npz"}, seconds=12.5)
    assert headstart.cache.verify_cache(path) == []
    runner = CliRunner()
    verify = runner.invoke(cli, ["cache", "verify", str(path)])
    assert verify.exit_code == 0 and f"OK {path}: {N} samples, 2 classes, cxr-foundation (10-d float16)" in verify.output
    info = json.loads(runner.invoke(cli, ["cache", "info", str(path), "--json"]).output)
    assert info["n_samples"] == N and info["splits"] == {"train": 54, "val": 18, "test": 18}
    assert info["feature_sets"][0]["backbone"] == "google/cxr-foundation" and info["feature_sets"][0]["weights"] == "external"
    heads = runner.invoke(cli, ["heads", str(path), "-o", str(tmp_path / "runs"), "--head", "logreg", "--sweep",
                                "quick", "--n-boot", "20", "--device", "cpu"])
    assert heads.exit_code == 0, heads.output
    (record,) = headstart.load_runs(tmp_path / "runs")
    assert record.backbone == "google/cxr-foundation" and record.metrics["test"]["auroc"] > 0.8
    assert record.timing["extract_seconds"] == 12.5

    cache = headstart.open_cache(path)
    X, y, ids = cache.arrays("cxr-foundation", "train")
    src = inputs()
    train = np.array(src["splits"]) == "train"
    np.testing.assert_allclose(X, src["features"]["cxr-foundation"][train], atol=2e-3)  # stored as float16
    assert y.tolist() == [int(v == "PNEUMONIA") for v in src["labels"][train]]
    assert cache.samples["group"][0] == "patient0"
    assert cache.feature_sets["cxr-foundation"].attrs["preprocessing"] == {"external": {"file": "emb.npz",
                                                                                        "model": "CXR Foundation"}}


def test_integer_labels_float32_and_rows_without_features(tmp_path):
    src = inputs()
    X = src["features"]["cxr-foundation"].copy()
    X[[1, 7]] = np.nan  # e.g. two scans the foundation model could not embed
    valid = np.ones(N, dtype=bool)
    valid[[1, 7]] = False
    labels = (src["labels"] == "PNEUMONIA").astype(int)
    path = write_features(tmp_path / "e.h5", **{**src, "features": {"emb": X}, "labels": labels}, valid=valid,
                          dtype="float32")
    assert headstart.cache.verify_cache(path) == []
    cache = headstart.open_cache(path)
    assert cache.feature_sets["emb"].n_skipped == 2 and cache.feature_sets["emb"].dtype == "float32"
    X_train, _, ids = cache.arrays("emb", "train")
    assert "scan_001.dcm" not in ids.tolist() and np.isfinite(X_train).all()
    np.testing.assert_array_equal(X_train[0], X[0])  # float32 is stored exactly


def test_same_features_again_change_nothing_other_features_need_overwrite(tmp_path):
    path = write_features(tmp_path / "e.h5", **inputs())
    before = path.stat().st_mtime_ns, path.stat().st_ino
    write_features(path, **inputs())  # same content, same fingerprint: already complete
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before
    with pytest.raises(CacheMismatchError, match="--overwrite"):
        write_features(path, **inputs(seed=1))
    write_features(path, **inputs(seed=1), overwrite=True)
    X, _, _ = headstart.open_cache(path).arrays("cxr-foundation", "val")
    val = np.array(inputs()["splits"]) == "val"
    np.testing.assert_allclose(X, inputs(seed=1)["features"]["cxr-foundation"][val], atol=2e-3)


def test_a_second_feature_set_is_added_beside_the_first(tmp_path):
    path = write_features(tmp_path / "e.h5", **inputs())
    src = inputs()
    write_features(path, **{**src, "features": {"other": src["features"]["cxr-foundation"][:, :4] * 2}})
    cache = headstart.open_cache(path)
    assert set(cache.feature_sets) == {"cxr-foundation", "other"}
    assert cache.arrays("other", "test")[0].shape == (18, 4)


@pytest.mark.parametrize("change, error, needle", [
    (lambda s: {**s, "ids": s["ids"][:-1]}, DataError, "89 ids but 90 labels, 90 splits, 90 groups"),
    (lambda s: {**s, "ids": ["same"] * N}, DataError, "sample ids repeat (same)"),
    (lambda s: {**s, "splits": ["training"] * N}, DataError, "unknown split names ['training']"),
    (lambda s: {**s, "labels": ["CAT"] * N}, DataError, "labels ['CAT'] are not in classes"),
    (lambda s: {**s, "labels": [3] * N}, DataError, "labels span 3..3; expected indices 0..1"),
    (lambda s: {**s, "classes": ["only"]}, DataError, "expected at least two distinct class names"),
    (lambda s: {**s, "features": {"emb": np.ones((N, 2, 2))}}, DataError, "of shape (90, 2, 2); expected"),
    (lambda s: {**s, "features": {"emb": np.full((N, 3), np.nan)}}, DataError, "90 rows with NaN/Inf; pass valid="),
    (lambda s: {**s, "features": {"emb": np.full((N, 3), 1e6)}}, DataError, "exceed the float16 range"),
    (lambda s: {**s, "features": {}}, ConfigError, "no features given"),
    (lambda s: {**s, "features": {"bad name!": np.ones((N, 3))}}, ConfigError, "is not allowed"),
], ids=["lengths", "repeats", "split", "label-name", "label-index", "classes", "shape", "nan", "overflow", "empty",
        "set-name"])
def test_bad_input_is_one_headstart_error_line(tmp_path, change, error, needle):
    with pytest.raises(error) as caught:
        write_features(tmp_path / "e.h5", **change(inputs()))
    assert needle in str(caught.value) and "\n" not in str(caught.value)
    assert isinstance(caught.value, HeadstartError)
    assert not (tmp_path / "e.h5").exists()


def test_label_matrix_makes_a_multilabel_cache(tmp_path):
    args = inputs()
    raw = np.random.default_rng(1).choice([1.0, 0.0, -1.0, np.nan], size=(N, 3))
    path = write_features(tmp_path / "ml.h5", **{**args, "labels": raw, "classes": ["A", "B", "C"]})
    assert headstart.cache.verify_cache(path) == []
    with headstart.open_cache(path) as cache:
        info = cache.info()
    assert info["task"] == "multilabel" and info["labels"] == ["A", "B", "C"]
    import h5py
    with h5py.File(path, "r") as f:
        stored = f["samples/labels"][...]
    assert stored.dtype == np.int8 and np.array_equal(stored, np.where(np.isnan(raw), -2, raw).astype(np.int8))
    with pytest.raises(DataError, match="row 0, column 'A' holds 2.0"):
        write_features(tmp_path / "bad.h5", **{**args, "labels": np.full((N, 3), 2.0), "classes": ["A", "B", "C"]})
    with pytest.raises(DataError, match="labels have 3 columns but classes names 2"):
        write_features(tmp_path / "bad.h5", **{**args, "labels": raw})
    assert not (tmp_path / "bad.h5").exists()
