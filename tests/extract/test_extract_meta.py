"""extract records every image's metadata under /samples/meta, from the one decode, through resume and re-split."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from headstart.cache.header import read_meta
from headstart.data.decode import decode_with_meta
from headstart.data.imagemeta import META_FIELDS, MISSING, meta_columns
from headstart.data.synthetic import make_manifest_csv, make_npz
from headstart.extract.config import ExtractConfig
from headstart.extract.runner import run_extract
from tests.extract.test_extract import BASE, invoke


def meta(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        table = read_meta(f, len(f["samples/id"]))
    assert table.present and not table.problems
    return table.columns


def ids(path: Path) -> list[str]:
    with h5py.File(path, "r") as f:
        return f["samples/id"].asstr()[...].tolist()


def assert_same_meta(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert got.keys() == want.keys() == set(META_FIELDS)
    for name in META_FIELDS:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def config(**kw) -> ExtractConfig:
    return ExtractConfig(**{"backbones": ["resnet18"], "weights": "random", "image_size": 32, "batch_size": 8,
                            "workers": 0, **kw})


@pytest.fixture(scope="module")
def cache(phantom_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("meta") / "c.h5"
    run_extract(data=str(phantom_dir), output=str(out), config=config())
    return out


def test_every_row_holds_the_metadata_of_its_file(cache, phantom_dir):
    expected = meta_columns([decode_with_meta(phantom_dir / i, min_size=32)[1] for i in ids(cache)])
    got = meta(cache)
    assert_same_meta(got, expected)
    assert (got["width"] > 0).all() and (got["phash"] != 0).all() and set(got["format"]) == {"JPEG"}


def test_skipped_bad_image_gets_the_missing_values(phantom_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(phantom_dir, data)
    (data / "train" / "NORMAL" / "IM-9999-0001.jpeg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "c.h5"
    run_extract(data=str(data), output=str(out), config=config(on_bad_image="skip"))
    got, row = meta(out), ids(out).index("train/NORMAL/IM-9999-0001.jpeg")
    for name, kind in META_FIELDS.items():
        np.testing.assert_array_equal(got[name][row], MISSING[kind], err_msg=name)
    assert (np.delete(got["width"], row) > 0).all()


def test_adding_a_set_keeps_the_metadata_and_fills_it_in_an_old_cache(cache, phantom_dir, tmp_path):
    out = tmp_path / "c.h5"
    shutil.copy(cache, out)
    with h5py.File(out, "a") as f:  # a marker value: adding a set must copy, not re-record, the metadata
        f["samples/meta/manufacturer"][0] = "kept"
    assert invoke("extract", str(phantom_dir), "-o", str(out), "-b", "efficientnet_b0", *BASE).exit_code == 0
    assert meta(out)["manufacturer"][0] == "kept"
    old = tmp_path / "old.h5"
    shutil.copy(cache, old)
    with h5py.File(old, "a") as f:  # a cache made before metadata existed
        del f["samples/meta"]
    assert invoke("extract", str(phantom_dir), "-o", str(old), "-b", "efficientnet_b0", *BASE).exit_code == 0
    assert_same_meta(meta(old), meta(cache))
    assert invoke("cache", "verify", str(old)).exit_code == 0


def test_resplit_keeps_the_metadata(tmp_path):
    manifest = make_manifest_csv(tmp_path / "data", n=40, image_size=32, with_split=False)
    out = tmp_path / "c.h5"
    args = ["extract", str(manifest), "-o", str(out), "-b", "resnet18", *BASE]
    assert invoke(*args).exit_code == 0
    before = meta(out)
    r = invoke(*args, "--test-fraction", "0.3")  # another --seed would also redraw the random weights
    assert r.exit_code == 0 and "extracted" not in r.output, r.output
    assert_same_meta(meta(out), before)


def test_npz_rows_record_their_shape_and_hash(tmp_path):
    data = make_npz(tmp_path / "m.npz", n_train=24, n_val=8, n_test=8, image_size=28)
    out = tmp_path / "c.h5"
    run_extract(data=str(data), output=str(out), config=config())
    got = meta(out)
    assert set(got["format"]) == {"NPZ"} and set(got["width"]) == {28} and (got["phash"] != 0).all()


def test_device_decode_records_the_same_metadata(cache, phantom_dir, tmp_path):
    """--decode device: size, mode and file size from the JPEG header in the worker, the hash from the device's
    pixels (bit-identical to the PIL path's on the same pixels; here both decoders are libjpeg-turbo); a PNG goes
    through PIL and keeps PIL's metadata."""
    data = tmp_path / "data"
    shutil.copytree(phantom_dir, data)
    jpeg = sorted(data.glob("train/NORMAL/*.jpeg"))[0]
    Image.open(jpeg).save(jpeg.with_suffix(".png"))
    jpeg.unlink()
    out = tmp_path / "device.h5"
    run_extract(data=str(data), output=str(out), config=config(decode="device"))
    got, want, rows = meta(out), meta(cache), ids(out)
    png = rows.index(jpeg.with_suffix(".png").relative_to(data).as_posix())
    assert got["format"][png] == "PNG" and got["phash"][png] != 0
    same = np.array([i != png for i in range(len(rows))])
    for name in ("width", "height", "mode", "bit_depth", "file_size", "format"):
        np.testing.assert_array_equal(got[name][same], want[name][same], err_msg=name)
    # the same libjpeg-turbo decode of grey phantoms (measured: every hash equal; nvJPEG may move a bit or two)
    np.testing.assert_array_equal(got["phash"][same], want["phash"][same])
