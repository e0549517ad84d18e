"""`headstart.open_cache`: arrays equal to plain h5py, invalid rows dropped and counted, no handle left open."""

from __future__ import annotations

import logging
import shutil

import h5py
import numpy as np
import pytest

import headstart
from headstart.errors import CacheError, ConfigError
from tests.heads.synthetic_cache import make_cache

INVALID = frozenset({0, 4, 5})  # rows 0 and 5 are train, row 4 is test (the split cycle is t, t, t, v, test)


@pytest.fixture
def cache_path(tmp_path):
    return make_cache(tmp_path / "c.h5", n=60, dim=6, sets=("resnet18", "densenet121"), invalid=INVALID)


def plain_h5py(path, name, split):
    """What an outside tool reading the documented schema gets."""
    with h5py.File(path, "r") as f:
        keep = (f["samples/split"].asstr()[()] == split) & f[f"valid/{name}"][()]
        return (f[f"features/{name}"][()][keep].astype(np.float32), f["samples/label"][()][keep],
                f["samples/id"].asstr()[()][keep])


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_arrays_match_plain_h5py(cache_path, split):
    cache = headstart.open_cache(cache_path)
    X, y, ids = cache.arrays("resnet18", split)
    X_ref, y_ref, ids_ref = plain_h5py(cache_path, "resnet18", split)
    assert X.dtype == np.float32 and y.dtype == np.int64 and X.shape == (len(ids_ref), 6)
    np.testing.assert_array_equal(X, X_ref)
    np.testing.assert_array_equal(y, y_ref)
    assert ids.tolist() == ids_ref.tolist()


def test_header_attributes(cache_path):
    with headstart.open_cache(cache_path) as cache:
        assert cache.classes == ["class0", "class1"]
        assert cache.splits == {"train": 36, "val": 12, "test": 12}
        assert cache.n_samples == 60 and len(cache.samples["id"]) == 60
        sets = cache.feature_sets
        assert set(sets) == {"densenet121", "resnet18"}
        rn = sets["resnet18"]
        assert (rn.dim, rn.dtype, rn.complete, rn.weights, rn.n_skipped) == (6, "float16", True, "random", 3)
        assert rn.attrs["device"] == "cpu" and "fingerprint" in rn.attrs
        assert "resnet18 (6-d)" in repr(cache)


def test_invalid_rows_are_dropped_and_counted(cache_path, caplog):
    cache = headstart.open_cache(cache_path)
    with caplog.at_level(logging.WARNING, logger="headstart"):
        X, y, ids = cache.arrays("resnet18", "train")
    assert len(ids) == 36 - 2 and "img/0000.png" not in ids.tolist()
    assert "dropped 2 of 36 train rows of 'resnet18'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="headstart"):
        cache.arrays("resnet18", "val")  # no invalid val rows: nothing to say
    assert "dropped" not in caplog.text


def test_no_handle_stays_open_for_plain_h5py_afterwards(cache_path):
    """The notebook sequence: open, read arrays, then plain h5py on the same file, in the same process."""
    cache = headstart.open_cache(cache_path)
    cache.arrays("resnet18", "train")
    cache.info()
    with h5py.File(cache_path, "r") as f:  # fails with "file locking flag values don't match" if one is left open
        assert f["features/resnet18"].shape == (60, 6)
    with h5py.File(cache_path, "r", locking=False) as f:  # and with the other locking mode too
        assert f["samples/id"].shape == (60,)
    assert cache.arrays("densenet121", "test")[0].shape == (11, 6)  # the object still works afterwards


def test_open_while_the_user_holds_a_plain_h5py_handle(cache_path):
    """The reverse order: a notebook's own h5py.File is still open when headstart reads the cache."""
    with h5py.File(cache_path, "r") as held:
        cache = headstart.open_cache(cache_path)
        X, _, _ = cache.arrays("resnet18", "val")
        assert X.shape == (12, 6) and held["features/resnet18"].shape == (60, 6)
        assert headstart.cache.verify_cache(cache_path) == []


def test_the_file_being_replaced_is_noticed(cache_path, tmp_path):
    cache = headstart.open_cache(cache_path)
    before = cache.arrays("resnet18", "train")[0]
    other = make_cache(tmp_path / "other.h5", n=60, dim=6, sets=("resnet18", "densenet121"), seed=3)
    shutil.copyfile(other, tmp_path / "tmp.h5")
    (tmp_path / "tmp.h5").replace(cache_path)  # as a writer publishes: rename over the cache
    after = cache.arrays("resnet18", "train")[0]
    assert after.shape == (36, 6) and not np.array_equal(before[:5], after[:5])
    np.testing.assert_array_equal(after, plain_h5py(cache_path, "resnet18", "train")[0])


def test_errors_are_one_line_headstart_errors(cache_path, tmp_path):
    with pytest.raises(CacheError, match="does not exist"):
        headstart.open_cache(tmp_path / "missing.h5")
    cache = headstart.open_cache(cache_path)
    with pytest.raises(CacheError, match=r"feature set 'vit_b_16' is not in .*available: densenet121, resnet18"):
        cache.arrays("vit_b_16", "train")
    with pytest.raises(ConfigError, match="split 'training' is unknown; expected one of train, val, test"):
        cache.arrays("resnet18", "training")
    cache.close()
    with pytest.raises(CacheError, match="was closed; open it again"):
        cache.arrays("resnet18", "train")
