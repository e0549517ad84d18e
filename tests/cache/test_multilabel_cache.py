"""A multi-label cache's samples table: raw codes survive, --splits-from compares them, verify checks them."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from headstart.cache import write_features
from headstart.cache.view import dataset_with_cache_splits
from headstart.cache.reader import FeatureCache, verify_cache
from headstart.data.sources import load_source
from headstart.errors import CacheMismatchError
from tests.data.multilabel_files import make_nih


def _cache_for(root, path, *, flip: bool = False):
    source = load_source(root)
    raw = np.array([s.labels for s in source.samples], dtype=np.int8)
    if flip:
        raw[0, 0] = 1 - raw[0, 0]
    splits = [("train", "val", "test")[i % 3] for i in range(len(raw))]
    write_features(path, features={"f": np.random.default_rng(0).normal(size=(len(raw), 4))}, labels=raw,
                   ids=[s.id for s in source.samples], splits=splits, classes=source.classes,
                   groups=[s.group for s in source.samples])
    return splits


def test_splits_from_a_multilabel_cache(tmp_path):
    root = make_nih(tmp_path / "nih", n_patients=4)
    splits = _cache_for(root, tmp_path / "c.h5")
    dataset = dataset_with_cache_splits(root, tmp_path / "c.h5")
    assert [s.split for s in dataset.samples] == splits and dataset.task == "multilabel"
    _cache_for(root, tmp_path / "other.h5", flip=True)
    with pytest.raises(CacheMismatchError, match="1 differ"):
        dataset_with_cache_splits(root, tmp_path / "other.h5")


def test_verify_flags_a_bad_code(tmp_path):
    root = make_nih(tmp_path / "nih", n_patients=3)
    _cache_for(root, tmp_path / "c.h5")
    with FeatureCache(tmp_path / "c.h5") as cache:
        assert cache.task == "multilabel" and cache.label_matrix.shape == (9, 14)
    with h5py.File(tmp_path / "c.h5", "r+") as f:
        data = f["samples/labels"][...]
        data[0, 0] = 5
        del f["samples/labels"]
        f["samples"].create_dataset("labels", data=data)
    assert any("other than the codes" in p for p in verify_cache(tmp_path / "c.h5"))


def test_new_splits_on_a_multilabel_cache_keep_its_codes_and_features(tmp_path):
    """`audit --fix` re-splits through `publish_splits`: on a multi-label cache the raw codes, the task and the
    features stay as they were and only the splits change (it used to fail on the table's -1 labels)."""
    from headstart.cache.writer import publish_splits

    root = make_nih(tmp_path / "nih", n_patients=4)
    path = tmp_path / "c.h5"
    splits = _cache_for(root, path)
    before = FeatureCache(path)
    moved = ["test" if i == 0 else s for i, s in enumerate(splits)]
    assert moved != splits and publish_splits(path, moved, note={"why": "test"})
    after = FeatureCache(path)
    assert verify_cache(path) == []
    assert after.task == "multilabel" and list(after.splits) == moved
    np.testing.assert_array_equal(after.label_matrix, before.label_matrix)
    np.testing.assert_array_equal(after.load("f")[0], before.load("f")[0])
