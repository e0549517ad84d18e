"""Write -> read round trips, adding sets, refusals and --overwrite."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from headstart.cache import CacheWriter, FeatureCache, verify_cache
from headstart.cache.schema import FORMAT_NAME, FORMAT_VERSION, lock_path, staging_dir
from headstart.errors import CacheError, CacheMismatchError
from tests.cache.synthetic import extract, features_for, make_spec, make_table, sha256_file


def test_round_trip(tmp_path, table):
    path = tmp_path / "c.h5"
    spec = make_spec(table)
    extract(path, table, [spec], invalid={3, 10})
    with FeatureCache(path) as fc:
        assert fc.ids.tolist() == table.ids
        assert fc.labels.tolist() == table.labels
        assert fc.splits.tolist() == table.splits
        assert fc.groups.tolist() == table.groups
        assert fc.classes == table.classes
        assert fc.root_attrs["source"] == {"root": "/data", "kind": "folder"}
        x, valid = fc.load("resnet18")
        meta = fc.feature_sets["resnet18"]
    assert x.dtype == np.float32 and x.shape == (len(table), 8)
    assert valid.tolist() == [i not in (3, 10) for i in range(len(table))]
    expected = features_for(spec).astype(np.float16).astype(np.float32)
    expected[[3, 10]] = 0
    np.testing.assert_array_equal(x, expected)
    assert meta["complete"] is True and meta["dtype"] == "float16" and meta["n_skipped"] == 2
    assert meta["skipped_ids"] == [table.ids[3], table.ids[10]]
    assert meta["preprocessing"]["input_size"] == 32 and meta["versions"]["torch"] == "test"
    assert meta["fingerprint"] == spec.fingerprint and meta["images_per_second"] == pytest.approx(24.7)
    assert meta["loop_seconds"] == 2.0 and meta["device"] == "cpu" and meta["batch_size"] == 8
    assert not staging_dir(path).exists() and not lock_path(path).exists()
    assert verify_cache(path) == []


def test_plain_h5py_layout(tmp_path, table):
    """Outside tools read the documented layout without headstart."""
    path = tmp_path / "c.h5"
    extract(path, table, [make_spec(table, dtype="float32")])
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == FORMAT_NAME and f.attrs["format_version"] == FORMAT_VERSION
        assert json.loads(f.attrs["classes"]) == table.classes
        assert f["samples/id"].asstr()[()].tolist() == table.ids
        assert f["samples/label"].dtype == np.int64
        ds = f["features/resnet18"]
        assert ds.shape == (len(table), 8) and ds.dtype == np.float32 and ds.fletcher32 and ds.chunks
        assert f["valid/resnet18"].dtype == bool
        assert ds.attrs["complete"] and ds.attrs["weights"] == "random"


def test_second_set_keeps_first(tmp_path, table):
    path = tmp_path / "c.h5"
    first, second = make_spec(table), make_spec(table, "densenet121", dim=12)
    extract(path, table, [first])
    with FeatureCache(path) as fc:
        before_x, before_v = fc.load("resnet18")
        before_meta = fc.feature_sets["resnet18"]
    writer = extract(path, table, [first, second])
    assert writer.todo == ["densenet121"]
    with FeatureCache(path) as fc:
        x, v = fc.load("resnet18")
        assert fc.feature_sets["resnet18"] == before_meta
        assert sorted(fc.feature_sets) == ["densenet121", "resnet18"]
        assert fc.load("densenet121")[0].shape == (len(table), 12)
    assert x.tobytes() == before_x.tobytes() and v.tobytes() == before_v.tobytes()
    # everything already there: nothing to do, file untouched
    digest = sha256_file(path)
    assert extract(path, table, [first, second]).todo == []
    assert sha256_file(path) == digest


def test_different_fingerprint_refused_file_untouched(tmp_path, table):
    path = tmp_path / "c.h5"
    extract(path, table, [make_spec(table)])
    digest = sha256_file(path)
    other = make_spec(table, weights="file:mine.pt")
    with pytest.raises(CacheMismatchError, match=r"feature set 'resnet18' in .* was computed differently .*--overwrite.*"
                                                 r"what differs: weights random in the cache, file:mine.pt requested$"):
        CacheWriter(path, table, [other])
    with pytest.raises(CacheMismatchError, match="float16"):
        CacheWriter(path, table, [make_spec(table, dtype="float32")])
    assert sha256_file(path) == digest
    assert not staging_dir(path).exists()


def test_overwrite_replaces_only_that_set(tmp_path, table):
    path = tmp_path / "c.h5"
    extract(path, table, [make_spec(table), make_spec(table, "vit", dim=4)])
    other = make_spec(table, weights="file:mine.pt")
    extract(path, table, [other], overwrite=True)
    with FeatureCache(path) as fc:
        assert fc.feature_sets["resnet18"]["fingerprint"] == other.fingerprint
        np.testing.assert_array_equal(fc.load("resnet18")[0], features_for(other).astype(np.float16).astype(np.float32))
        assert "vit" in fc.feature_sets
    assert verify_cache(path) == []


def test_different_manifest_refused_then_rebuilt(tmp_path, table):
    path = tmp_path / "c.h5"
    extract(path, table, [make_spec(table)])
    digest = sha256_file(path)
    other_table = make_table(seed=1)
    with pytest.raises(CacheMismatchError, match="different data set or splits.*--overwrite"):
        CacheWriter(path, other_table, [make_spec(other_table)])
    assert sha256_file(path) == digest
    extract(path, other_table, [make_spec(other_table)], overwrite=True)
    with FeatureCache(path) as fc:
        assert fc.labels.tolist() == other_table.labels


def test_output_path_checks(tmp_path, table):
    with pytest.raises(CacheError, match="is a folder"):
        CacheWriter(tmp_path, table, [make_spec(table)])
    with pytest.raises(CacheError, match="does not exist"):
        CacheWriter(tmp_path / "nope" / "c.h5", table, [make_spec(table)])
    junk = tmp_path / "notes.h5"
    junk.write_text("my thesis")
    for overwrite in (False, True):  # never replace a file that is not HDF5 at all
        with pytest.raises(CacheError, match="not an HDF5 file"):
            CacheWriter(junk, table, [make_spec(table)], overwrite=overwrite)
    assert junk.read_text() == "my thesis"


def test_truncated_cache_is_never_replaced(tmp_path, table):
    """A file that cannot be read as HDF5 may be someone's only copy of something: --overwrite leaves it too."""
    path = tmp_path / "c.h5"
    extract(path, table, [make_spec(table)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    for overwrite in (False, True):
        with pytest.raises(CacheError, match="truncated or damaged.*move or delete it if it is yours to lose") as info:
            CacheWriter(path, table, [make_spec(table)], overwrite=overwrite)
        assert "--overwrite" not in str(info.value)
    assert path.read_bytes() == data[: len(data) // 3]


def test_foreign_hdf5_is_never_replaced(tmp_path, table):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(5)
    before = sha256_file(path)
    for overwrite in (False, True):
        with pytest.raises(CacheError, match=r"other\.h5 is an HDF5 file but not a headstart cache.*another -o") as info:
            CacheWriter(path, table, [make_spec(table)], overwrite=overwrite)
        assert "--overwrite" not in str(info.value)
    assert sha256_file(path) == before


def test_damaged_headstart_cache_needs_overwrite(tmp_path, table):
    """A file that says it is a headstart cache but has lost a group is ours to replace, on request."""
    path = tmp_path / "c.h5"
    extract(path, table, [make_spec(table)])
    with h5py.File(path, "a") as f:
        del f["valid"]
    with pytest.raises(CacheError, match="has no /valid group; it is damaged; pass --overwrite to replace it"):
        CacheWriter(path, table, [make_spec(table)])
    extract(path, table, [make_spec(table)], overwrite=True)
    assert verify_cache(path) == []


def test_nan_features_refused_at_write(tmp_path, table):
    spec = make_spec(table)
    with CacheWriter(tmp_path / "c.h5", table, [spec]) as writer:
        feats = np.full((2, 8), 1e6, dtype=np.float32)  # overflows float16
        with pytest.raises(CacheError, match="NaN/Inf.*--feature-dtype float32"):
            writer.write_batch(np.array([0, 1]), {"resnet18": feats}, np.array([True, True]))
