"""decode_with_meta / imagemeta: stored size before draft, mode and bit depth, DICOM tags, perceptual hash."""

from __future__ import annotations

import io
from dataclasses import fields

import numpy as np
import pytest
from PIL import Image

from headstart.data.decode import decode_image, decode_with_meta
from headstart.data.imagemeta import (
    META_FIELDS, MISSING, ImageMeta, from_text, hamming, meta_columns, meta_records, perceptual_hash, record_columns,
    to_text,
)
from headstart.data.sources import load_source
from headstart.data.synthetic import make_npz, random_anatomy, render_phantom
from headstart.errors import DataError
from tests.data.sample_files import write_dicom


def _smooth_image(seed: int, size: int = 256) -> np.ndarray:
    """A smooth random grayscale field: structure at several scales, like anatomy, unlike white noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (8, 8)).astype(np.float32)
    img = np.asarray(Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC))
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def _reencode(img: Image.Image, *, quality: int = 75, scale: float = 0.9) -> Image.Image:
    w, h = img.size
    small = img.resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf)


def test_fields_match_schema():
    assert [f.name for f in fields(ImageMeta)] == list(META_FIELDS)


def test_size_is_read_before_draft(tmp_path):
    Image.fromarray(_smooth_image(0, 1200)[:800], mode="L").save(tmp_path / "big.jpeg", quality=90)
    img, meta = decode_with_meta(tmp_path / "big.jpeg", min_size=100)
    assert img.size[0] < 1200  # draft mode really decoded at reduced scale
    assert (meta.width, meta.height) == (1200, 800)
    assert meta.format == "JPEG" and meta.mode == "L" and meta.bit_depth == 8
    assert meta.file_size == (tmp_path / "big.jpeg").stat().st_size


def test_same_pixels_as_decode_image(tmp_path):
    Image.fromarray(_smooth_image(1, 300), mode="L").save(tmp_path / "a.jpeg")
    img, _ = decode_with_meta(tmp_path / "a.jpeg", min_size=64)
    assert np.array_equal(np.asarray(img), np.asarray(decode_image(tmp_path / "a.jpeg", min_size=64)))


def test_exif_rotation_swaps_stored_sides(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.fromarray(_smooth_image(2, 64)[:40], mode="L").save(tmp_path / "r.jpeg", exif=exif)
    img, meta = decode_with_meta(tmp_path / "r.jpeg")
    assert img.size == (40, 64) and (meta.width, meta.height) == (40, 64)


def test_16bit_png_mode_and_depth(tmp_path):
    Image.fromarray(np.tile(np.linspace(0, 4000, 50).astype(np.uint16), (30, 1))).save(tmp_path / "x.png")
    _, meta = decode_with_meta(tmp_path / "x.png")
    assert meta.mode.startswith("I") and meta.bit_depth in (16, 32) and meta.format == "PNG"
    assert (meta.width, meta.height) == (50, 30)


def test_dicom_tags(tmp_path):
    pixels = (np.arange(48 * 64).reshape(48, 64) % 4096).astype(np.uint16)
    path = write_dicom(tmp_path / "x.dcm", pixels, photometric="MONOCHROME1", bits_stored=12)
    import pydicom

    ds = pydicom.dcmread(path)
    ds.ViewPosition, ds.Manufacturer, ds.PixelSpacing = "PA", "ACME", [0.14, 0.15]
    ds.save_as(path)
    _, meta = decode_with_meta(path)
    assert (meta.width, meta.height, meta.format, meta.bit_depth) == (64, 48, "DICOM", 12)
    assert (meta.view_position, meta.manufacturer, meta.photometric) == ("PA", "ACME", "MONOCHROME1")
    assert meta.pixel_spacing_y == pytest.approx(0.14) and meta.pixel_spacing_x == pytest.approx(0.15)


def test_dicom_without_spacing_is_nan(tmp_path):
    path = write_dicom(tmp_path / "y.dcm", np.ones((16, 16), dtype=np.uint16) * 100)
    _, meta = decode_with_meta(path)
    assert np.isnan(meta.pixel_spacing_y) and meta.view_position == ""


def test_bad_file_still_one_line_error(tmp_path):
    (tmp_path / "bad.jpeg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="bad.jpeg"):
        decode_with_meta(tmp_path / "bad.jpeg")


@pytest.mark.parametrize("seed", range(6))
def test_phash_survives_jpeg_q75_and_90_percent_resize(seed):
    original = Image.fromarray(_smooth_image(seed), mode="L").convert("RGB")
    assert hamming(perceptual_hash(original), perceptual_hash(_reencode(original))) <= 4
    assert hamming(perceptual_hash(original), perceptual_hash(_reencode(original, quality=90, scale=1.0))) <= 2


def test_phash_of_phantom_copies_and_distinct_phantoms():
    rng = np.random.default_rng(0)
    images = [Image.fromarray(render_phantom(rng, size=128, pneumonia=bool(i % 2), anatomy=random_anatomy(rng)))
              for i in range(12)]
    hashes = np.array([perceptual_hash(im) for im in images], dtype=np.uint64)
    copies = np.array([perceptual_hash(_reencode(im)) for im in images], dtype=np.uint64)
    assert (hamming(hashes, copies) <= 4).all()
    distinct = hamming(hashes[:, None], hashes[None, :])[~np.eye(len(hashes), dtype=bool)]
    # Phantoms share one template, as radiographs share anatomy: a few distinct pairs come within 4 bits too,
    # which is why the audit lets the hash decide only among each image's nearest embeddings.
    assert np.median(distinct) >= 12


def test_phash_is_the_orthonormal_dct_of_the_32px_image():
    from scipy.fft import dctn

    from headstart.data import imagemeta

    gray = np.random.default_rng(0).uniform(0, 255, (32, 32))
    assert np.allclose(imagemeta._DCT_LOW @ gray @ imagemeta._DCT_LOW.T, dctn(gray, type=2, norm="ortho")[:8, :8])


def test_phash_differs_for_different_images():
    hashes = np.array([perceptual_hash(Image.fromarray(_smooth_image(s), mode="L")) for s in range(20)],
                      dtype=np.uint64)
    distances = hamming(hashes[:, None], hashes[None, :])[~np.eye(20, dtype=bool)]
    assert distances.min() > 8 and 24 <= np.median(distances) <= 40  # unrelated images differ in about half the bits


def test_meta_columns_fill_missing_rows():
    meta = ImageMeta(width=10, height=20, mode="L", bit_depth=8, file_size=99, format="PNG", phash=2**64 - 1)
    cols = meta_columns([meta, None])
    assert set(cols) == set(META_FIELDS)
    assert cols["width"].tolist() == [10, MISSING["int"]] and cols["mode"].tolist() == ["L", ""]
    assert cols["phash"].dtype == np.uint64 and int(cols["phash"][0]) == 2**64 - 1
    assert np.isnan(cols["pixel_spacing_x"]).all()


def test_text_and_staged_records_round_trip():
    """How metadata crosses the loader's worker boundary (text) and is staged next to features (records)."""
    metas = [ImageMeta(width=10, height=20, mode="L", bit_depth=8, file_size=99, format="DICOM",
                       manufacturer="Ünïcode Médical Systems", pixel_spacing_y=0.14, phash=2**64 - 1), None]
    assert [to_text(from_text(to_text(m))) for m in metas] == [to_text(m) for m in metas]  # NaN spacing: text equal
    assert from_text(to_text(metas[0])).phash == 2**64 - 1 and from_text("") is None
    records = meta_records(metas)
    assert records.dtype.names == tuple(META_FIELDS) and not records.dtype.hasobject  # saved without pickle
    got, want = record_columns(records), meta_columns(metas)
    for name in META_FIELDS:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        assert got[name].dtype == want[name].dtype
    with pytest.raises(ValueError, match="lack fields"):
        record_columns(np.zeros(2, dtype=[("width", np.int64)]))


def test_sources_load_with_meta(phantom_dir, tmp_path):
    source = load_source(phantom_dir)
    img, meta = source.load_with_meta(source.samples[0], min_size=16)
    assert img.mode == "RGB" and meta.format == "JPEG" and meta.width == 40 and meta.phash != 0
    npz = load_source(make_npz(tmp_path / "m.npz", n_train=4, n_val=2, n_test=2))
    img, meta = npz.load_with_meta(npz.samples[0])
    assert (meta.width, meta.height, meta.format, meta.mode, meta.bit_depth) == (28, 28, "NPZ", "L", 8)
    assert meta.file_size == 28 * 28
