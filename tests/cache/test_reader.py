"""Bad cache files: clear one-line errors from the reader, problems (not exceptions) from verify, CLI exit codes."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from headstart.cache import FeatureCache, compute_fingerprint, verify_cache
from headstart.cli import cli
from headstart.errors import CacheError
from tests.cache.synthetic import extract, make_spec


@pytest.fixture
def cache_path(tmp_path, table):
    path = tmp_path / "c.h5"
    extract(path, table, [make_spec(table, dim=64), make_spec(table, "vit", dim=4)], invalid={2})
    return path


def _open_error(path) -> str:
    with pytest.raises(CacheError) as info:
        FeatureCache(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_open_errors(tmp_path, cache_path):
    assert "does not exist" in _open_error(tmp_path / "missing.h5")
    assert "is a folder" in _open_error(tmp_path)
    (tmp_path / "text.h5").write_text("hello, not hdf5")
    assert "is not an HDF5 file" in _open_error(tmp_path / "text.h5")
    (tmp_path / "empty.h5").write_bytes(b"")
    assert "empty" in _open_error(tmp_path / "empty.h5")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(cache_path.read_bytes()[:2000])
    assert "truncated or damaged" in _open_error(truncated)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    assert "not a headstart cache" in _open_error(tmp_path / "other.h5")
    with h5py.File(cache_path, "a") as f:
        f.attrs["format_version"] = 99
    assert "newer headstart (format 99" in _open_error(cache_path) and "upgrade headstart" in _open_error(cache_path)


def test_load_errors(cache_path):
    with FeatureCache(cache_path) as fc:
        with pytest.raises(CacheError, match=r"'densenet' is not in .*available: resnet18, vit"):
            fc.load("densenet")
    with h5py.File(cache_path, "a") as f:
        f["features/vit"].attrs["complete"] = False
        f["features/resnet18"][5, 3] = np.nan
    with FeatureCache(cache_path) as fc:
        with pytest.raises(CacheError, match="'vit' .* is incomplete; rerun `headstart extract` with the same options"):
            fc.load("vit")
        with pytest.raises(CacheError, match="contains 1 NaN/Inf values; re-extract with --overwrite"):
            fc.load("resnet18")
    problems = verify_cache(cache_path)
    assert any("'vit' is incomplete" in p for p in problems)
    assert any("'resnet18' contains 1 NaN/Inf" in p for p in problems)


def test_nan_in_skipped_rows_is_ignored(cache_path):
    with h5py.File(cache_path, "a") as f:
        f["features/resnet18"][2, 0] = np.inf  # row 2 is a skipped image
    with FeatureCache(cache_path) as fc:
        x, valid = fc.load("resnet18")
    assert not valid[2]


def _flip_feature_byte(path) -> None:
    """Flip one byte inside the stored feature data of resnet18 (found by its known value)."""
    with h5py.File(path, "r") as f:
        ds = f["features/resnet18"]
        offset = ds.id.get_chunk_info(0).byte_offset
    data = bytearray(path.read_bytes())
    data[offset + 100] ^= 0x40
    path.write_bytes(bytes(data))


def test_verify_detects_flipped_feature_byte(cache_path):
    assert verify_cache(cache_path) == []
    _flip_feature_byte(cache_path)
    problems = verify_cache(cache_path)
    assert len(problems) == 1 and "feature set 'resnet18': rows 0-" in problems[0] and "checksum" in problems[0]
    with FeatureCache(cache_path) as fc:
        with pytest.raises(CacheError, match="'resnet18' .* cannot be read .* damaged"):
            fc.load("resnet18")
        assert fc.load("vit")[0].shape == (fc.n_samples, 4)  # undamaged sets still load


def test_verify_detects_edited_metadata_and_samples(cache_path):
    with h5py.File(cache_path, "a") as f:
        f["features/vit"].attrs["weights"] = "imagenet:IMAGENET1K_V1"
        labels = f["samples/label"][()]
        labels[0] = 1 - labels[0]
        f["samples/label"][...] = labels
    problems = verify_cache(cache_path)
    assert any("'vit': stored fingerprint" in p for p in problems)
    assert any("samples_sha256" in p for p in problems)


def test_verify_names_the_edited_part(cache_path):
    with h5py.File(cache_path, "a") as f:
        prep = json.loads(f["features/vit"].attrs["preprocessing"])
        f["features/vit"].attrs["preprocessing"] = json.dumps({**prep, "input_size": 64})
    (problem,) = verify_cache(cache_path)
    assert "'vit': stored fingerprint" in problem and "changed since extraction: preprocessing.input_size" in problem


def test_verify_explains_a_set_fingerprinted_by_an_older_version(cache_path):
    """A version-1 set (no `fingerprint_version`, no precision or random state hashed) is stale, not damaged."""
    with h5py.File(cache_path, "a") as f:
        ds = f["features/vit"]
        attrs = {k: (json.loads(ds.attrs[k]) if k == "preprocessing" else ds.attrs[k])
                 for k in ("backbone", "weights", "weights_sha256", "preprocessing")}
        del ds.attrs["fingerprint_version"], ds.attrs["fingerprint_digests"]
        ds.attrs["fingerprint"] = compute_fingerprint(
            backbone=attrs["backbone"], weights_tag=attrs["weights"], weights_sha256=attrs["weights_sha256"],
            preprocessing=attrs["preprocessing"], manifest_hash=f.attrs["manifest_hash"], version=1)
    (problem,) = verify_cache(cache_path)
    assert "fingerprint version 1, now 2" in problem and "precision" in problem and "--overwrite" in problem


def test_verify_never_raises_on_random_damage(cache_path, tmp_path):
    rng = np.random.default_rng(0)
    original = cache_path.read_bytes()
    outcomes = set()
    for trial in range(30):
        data = bytearray(original)
        if trial % 3 == 0:
            data = data[: int(rng.integers(0, len(data)))]
        else:
            for pos in rng.integers(0, len(data), 4):
                data[pos] ^= int(rng.integers(1, 256))
        damaged = tmp_path / f"d{trial}.h5"
        damaged.write_bytes(bytes(data))
        problems = verify_cache(damaged)  # must return, not raise
        assert all(isinstance(p, str) and "\n" not in p for p in problems)
        outcomes.add(bool(problems))
    assert True in outcomes


def test_cli_info_and_verify(cache_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["cache", "info", str(cache_path)])
    assert result.exit_code == 0, result.output
    assert "samples: 37" in result.output and "resnet18" in result.output and "float16" in result.output
    result = runner.invoke(cli, ["cache", "info", str(cache_path), "--json"])
    assert result.exit_code == 0
    info = json.loads(result.output)
    assert info["n_samples"] == 37 and info["classes"] == ["NORMAL", "PNEUMONIA"]
    assert sum(info["splits"].values()) == 37 and set(info["splits"]) == {"train", "val", "test"}
    sets = {s["name"]: s for s in info["feature_sets"]}
    assert sets["resnet18"]["dim"] == 64 and sets["vit"]["dtype"] == "float16" and sets["vit"]["complete"] is True
    assert {"backbone", "weights"} <= set(sets["vit"]) and sets["resnet18"]["n_skipped"] == 1
    result = runner.invoke(cli, ["cache", "verify", str(cache_path)])
    assert result.exit_code == 0 and result.output.startswith("OK ")
    _flip_feature_byte(cache_path)
    result = runner.invoke(cli, ["cache", "verify", str(cache_path)])
    assert result.exit_code == 1 and "checksum" in result.output and "Traceback" not in result.output


def test_cli_bad_files_exit_1_without_traceback(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_text("not a cache")
    runner = CliRunner()
    missing = str(tmp_path / "no.h5")
    for args in (["cache", "info", str(bad)], ["cache", "verify", str(bad)], ["cache", "info", missing]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 1, (args, result.output)
        assert "Error:" in result.output and "Traceback" not in result.output


def test_load_in_slices_equals_the_whole_set(cache_path, monkeypatch):
    """Loading reads a set slice by slice into one float32 array; the finiteness check still sees every valid row."""
    import headstart.cache.reader as reader

    with h5py.File(cache_path, "r") as f:
        whole = f["features/resnet18"][()].astype(np.float32)
    monkeypatch.setattr(reader, "READ_ROWS_BYTES", 3 * 64 * 4)  # three rows per slice: 13 slices for 37 rows
    with FeatureCache(cache_path) as fc:
        x, valid = fc.load("resnet18")
    assert x.dtype == np.float32 and np.array_equal(x, whole) and not valid[2]
    with h5py.File(cache_path, "a") as f:
        f["features/resnet18"][2, 1] = np.nan  # skipped row: ignored
        f["features/resnet18"][35, 0] = np.inf  # valid row in the last slice: counted
    with FeatureCache(cache_path) as fc:
        with pytest.raises(CacheError, match="contains 1 NaN/Inf values"):
            fc.load("resnet18")
