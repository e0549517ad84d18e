"""Saved heads: every kind round-trips to the same predict_proba, and its graph module computes the same."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from headstart.errors import DataError
from headstart.heads import KNNHead, LinearHead, LogRegHead, MLPHead, load_head, save_head
from headstart.heads.graph import head_module
from headstart.heads.persist import HEAD_JSON, HEAD_TENSORS, read_head


def _blobs(n_classes: int, n: int = 90, dim: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    X = rng.normal(size=(n, dim)).astype(np.float32)
    X[np.arange(n), y] += 2.0
    return X, y


HEADS = [lambda: LogRegHead(C=0.5), lambda: LinearHead(epochs=3), lambda: MLPHead(epochs=3, hidden=8, dropout=0.1),
         lambda: KNNHead(k=7), lambda: KNNHead(k=5, weights="uniform", class_weight="balanced")]


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("make", HEADS)
def test_every_kind_round_trips_exactly(tmp_path, make, n_classes):
    X, y = _blobs(n_classes)
    head = make().fit(X[:60], y[:60])
    classes = [f"c{i}" for i in range(n_classes)]
    save_head(tmp_path, head, classes=classes, threshold=0.3 if n_classes == 2 else None)
    loaded = load_head(tmp_path)
    assert type(loaded) is type(head) and loaded.get_params() == head.get_params()
    np.testing.assert_array_equal(loaded.predict_proba(X[60:]), head.predict_proba(X[60:]))
    np.testing.assert_array_equal(loaded.predict(X[60:]), head.predict(X[60:]))
    saved = read_head(tmp_path / HEAD_JSON)
    assert saved.classes == classes and saved.threshold == (0.3 if n_classes == 2 else None)
    module = head_module(loaded)
    with torch.no_grad():
        graph = module(torch.from_numpy(X[60:])).numpy()
    np.testing.assert_allclose(graph, head.predict_proba(X[60:]), atol=1e-6)


def test_knn_reference_rows_are_float32_whatever_the_feature_set_dtype(tmp_path):
    """The saved rows are the float32 rows the record was evaluated with, so a float16 set predicts exactly too."""
    X, y = _blobs(2, n=200, dim=32)
    head = KNNHead(k=9).fit(X, y)
    save_head(tmp_path / "a", head, classes=["a", "b"], threshold=0.5, feature_set={"dtype": "float16"})
    save_head(tmp_path / "b", head, classes=["a", "b"], threshold=0.5, feature_set={"dtype": "float32"})
    half, full = read_head(tmp_path / "a"), read_head(tmp_path / "b")
    assert half.info["tensors"]["dtypes"]["train"] == "float32" == full.info["tensors"]["dtypes"]["train"]
    np.testing.assert_array_equal(half.estimator.predict_proba(X), head.predict_proba(X))
    np.testing.assert_array_equal(full.estimator.predict_proba(X), head.predict_proba(X))


def test_npz_tensors_load_without_pickle(tmp_path):
    """A head whose tensors are a plain .npz (no safetensors) loads the same."""
    import hashlib

    X, y = _blobs(2)
    head = LogRegHead().fit(X, y)
    save_head(tmp_path, head, classes=["a", "b"], threshold=0.5)
    from safetensors.numpy import load

    arrays = load((tmp_path / HEAD_TENSORS).read_bytes())
    np.savez(tmp_path / "head.npz", **arrays)
    info = json.loads((tmp_path / HEAD_JSON).read_text())
    info["tensors"].update(file="head.npz", sha256=hashlib.sha256((tmp_path / "head.npz").read_bytes()).hexdigest())
    (tmp_path / HEAD_JSON).write_text(json.dumps(info))
    (tmp_path / HEAD_TENSORS).unlink()
    np.testing.assert_array_equal(load_head(tmp_path).predict_proba(X), head.predict_proba(X))


@pytest.mark.parametrize("change, message", [
    (lambda info: info.update(format_version=99), "newer than this headstart reads"),
    (lambda info: info.update(head="forest"), "is not a headstart head"),
    (lambda info: info["tensors"].update(file="../../etc/passwd"), "cannot be read"),
    (lambda info: info.update(classes=["only"]), "class names"),
    (lambda info: info["tensors"].update(sha256="0" * 64), "is damaged"),
])
def test_bad_head_json_is_one_line(tmp_path, change, message):
    X, y = _blobs(2)
    save_head(tmp_path, LogRegHead().fit(X, y), classes=["a", "b"], threshold=0.5)
    info = json.loads((tmp_path / HEAD_JSON).read_text())
    change(info)
    (tmp_path / HEAD_JSON).write_text(json.dumps(info))
    with pytest.raises(DataError, match=message) as caught:
        load_head(tmp_path)
    assert "\n" not in str(caught.value)


def test_tensors_that_do_not_fit_the_kind(tmp_path):
    """A logreg head.json over an MLP's tensors: refused by the kind's own check, not by a numpy traceback."""
    X, y = _blobs(2)
    save_head(tmp_path / "mlp", MLPHead(epochs=2, hidden=4).fit(X, y), classes=["a", "b"], threshold=0.5)
    save_head(tmp_path / "lr", LogRegHead().fit(X, y), classes=["a", "b"], threshold=0.5)
    info = json.loads((tmp_path / "mlp" / HEAD_JSON).read_text())
    info.update(head="logreg", params={"C": 1.0, "class_weight": None, "max_iter": 10})
    (tmp_path / "mlp" / HEAD_JSON).write_text(json.dumps(info))
    with pytest.raises(DataError, match="lacks tensor"):
        load_head(tmp_path / "mlp")


def test_missing_head_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="no head.json"):
        load_head(tmp_path)
