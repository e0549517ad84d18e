"""decode_image / decode_dicom: every mode to RGB, EXIF, draft mode, bad files, DICOM."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from headstart.data.decode import decode_dicom, decode_image, is_dicom
from headstart.errors import DataError
from tests.data.sample_files import shared_data, write_dicom


def _gray(img: Image.Image) -> np.ndarray:
    arr = np.asarray(img)
    assert img.mode == "RGB" and arr.ndim == 3
    return arr[..., 0].astype(int)


def test_8bit_gray_becomes_rgb_with_equal_channels(tmp_path):
    pixels = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (10, 1))
    Image.fromarray(pixels, mode="L").save(tmp_path / "g.png")
    img = decode_image(tmp_path / "g.png")
    arr = np.asarray(img)
    assert img.mode == "RGB" and img.size == (32, 10)
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    assert (arr[..., 0] == pixels).all()


def test_16bit_gray_is_scaled_by_its_own_range(tmp_path):
    # 12-bit data in a 16-bit container, as medical PNGs store it: dividing by 257 would give near-black.
    pixels = np.tile(np.linspace(1000, 4000, 64).astype(np.uint16), (8, 1))
    Image.fromarray(pixels).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    gray = _gray(decode_image(tmp_path / "g16.png"))
    assert gray.min() == 0 and gray.max() == 255
    assert (np.diff(gray[0]) >= 0).all()  # monotone


@pytest.mark.parametrize("mode", ["I", "F"])
def test_32bit_int_and_float_tiff(tmp_path, mode):
    pixels = np.tile(np.linspace(-5, 5, 16), (4, 1)).astype(np.int32 if mode == "I" else np.float32)
    Image.fromarray(pixels, mode=mode).save(tmp_path / "x.tif")
    gray = _gray(decode_image(tmp_path / "x.tif"))
    assert gray[0, 0] == 0 and gray[0, -1] == 255


def test_constant_16bit_image_is_black_not_nan(tmp_path):
    Image.fromarray(np.full((4, 4), 700, dtype=np.uint16)).save(tmp_path / "c.png")
    assert (_gray(decode_image(tmp_path / "c.png")) == 0).all()


def test_rgba_transparency_is_composited_on_black(tmp_path):
    pixels = np.zeros((4, 8, 4), dtype=np.uint8)
    pixels[:, :4] = (200, 100, 50, 255)  # opaque left half
    pixels[:, 4:] = (255, 255, 255, 0)  # transparent white right half
    Image.fromarray(pixels, mode="RGBA").save(tmp_path / "a.png")
    arr = np.asarray(decode_image(tmp_path / "a.png"))
    assert arr.shape == (4, 8, 3)
    assert (arr[:, :4] == (200, 100, 50)).all()
    assert (arr[:, 4:] == 0).all()


def test_la_mode(tmp_path):
    Image.new("LA", (4, 4), (180, 255)).save(tmp_path / "la.png")
    assert (np.asarray(decode_image(tmp_path / "la.png")) == 180).all()


def test_palette_with_and_without_transparency(tmp_path):
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.save(tmp_path / "p.png")
    assert (np.asarray(decode_image(tmp_path / "p.png")) == (10, 200, 30)).all()
    pal.save(tmp_path / "p.gif", transparency=1)
    assert (np.asarray(decode_image(tmp_path / "p.gif")) == 0).all()  # fully transparent -> black


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (16, 16), (255, 0, 0, 0)).save(tmp_path / "c.jpg", quality=95)  # pure cyan
    r, g, b = np.asarray(decode_image(tmp_path / "c.jpg")).reshape(-1, 3).mean(0)
    assert r < 40 and g > 215 and b > 215


def test_bilevel_image(tmp_path):
    Image.new("1", (5, 5), 1).save(tmp_path / "b.png")
    assert (np.asarray(decode_image(tmp_path / "b.png")) == 255).all()


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40), dtype=np.uint8)
    pixels[:, :20] = 255  # stored: left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels, mode="L").save(tmp_path / "r.jpg", exif=exif, quality=95)
    gray = _gray(decode_image(tmp_path / "r.jpg"))
    assert gray.shape == (40, 20)  # portrait after rotation
    assert gray[:20].mean() > 200 and gray[20:].mean() < 50  # the stored left edge is now on top


def test_upper_case_extension(tmp_path):
    Image.new("L", (8, 8), 90).save(tmp_path / "X.JPEG", format="JPEG")
    assert decode_image(tmp_path / "X.JPEG").size == (8, 8)


def test_draft_mode_reduces_large_jpeg_but_keeps_min_size(tmp_path):
    gradient = np.tile(np.linspace(0, 255, 2000).astype(np.uint8), (1600, 1))
    Image.fromarray(gradient, mode="L").save(tmp_path / "big.jpg", quality=85)
    assert decode_image(tmp_path / "big.jpg").size == (2000, 1600)
    reduced = decode_image(tmp_path / "big.jpg", min_size=256)
    assert min(reduced.size) >= 256
    assert reduced.size == (500, 400)  # 1/4 scale: 1/8 would give 200 < 256
    assert decode_image(tmp_path / "big.jpg", min_size=1600).size == (2000, 1600)


def test_draft_is_jpeg_only(tmp_path):
    Image.new("L", (600, 600), 5).save(tmp_path / "big.png")
    assert decode_image(tmp_path / "big.png", min_size=64).size == (600, 600)


@pytest.mark.parametrize("side", [12, 20])  # 144 px: PIL's warning (made an error); 400 px: PIL's error
def test_decompression_bomb(tmp_path, monkeypatch, side):
    Image.new("L", (side, side)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(DataError) as err:
        decode_image(tmp_path / "bomb.png")
    msg = str(err.value)
    assert str(tmp_path / "bomb.png") in msg and str(side * side) in msg and "decompression bomb" in msg
    assert "\n" not in msg


def _jpeg_bytes(tmp_path) -> bytes:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8), mode="L").save(tmp_path / "ok.jpg")
    return (tmp_path / "ok.jpg").read_bytes()


@pytest.mark.parametrize("kind", ["zero", "truncated", "garbage", "truncated_png"])
def test_bad_files_raise_one_line_naming_the_file(tmp_path, kind):
    good = _jpeg_bytes(tmp_path)
    path = tmp_path / ("bad.png" if kind == "truncated_png" else "bad.jpg")
    if kind == "zero":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "garbage":
        path.write_bytes(b"this is not an image at all" * 20)
    else:
        Image.new("L", (64, 64), 3).save(path)
        path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError) as err:
        decode_image(path)
    msg = str(err.value)
    # What to do depends on the command (extract offers --on-bad-image skip, finetune does not): callers add it.
    assert msg.startswith(f"{path}: cannot decode image (") and "--on-bad-image" not in msg and "\n" not in msg


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        decode_image(tmp_path / "nope.png")


# --------------------------------------------------------------------------------------------- DICOM


def _ramp() -> np.ndarray:
    return np.tile(np.linspace(0, 4095, 256).round().astype(np.uint16), (4, 1))


def test_dicom_rescale_and_window_are_applied(tmp_path):
    stored = _ramp()
    # rescaled = 2 * stored - 1000; window [800, 1200] on rescaled values <=> stored in [900, 1100]
    path = write_dicom(tmp_path / "w.dcm", stored, slope=2, intercept=-1000, center=1000, width=400)
    gray = _gray(decode_image(path))
    assert (gray[:, stored[0] < 880] == 0).all()
    assert (gray[:, stored[0] > 1120] == 255).all()
    inside = (stored[0] > 920) & (stored[0] < 1080)
    assert inside.sum() >= 3 and ((gray[0, inside] > 0) & (gray[0, inside] < 255)).all()


def test_dicom_monochrome1_is_inverted(tmp_path):
    stored = _ramp()
    mono2 = _gray(decode_image(write_dicom(tmp_path / "m2.dcm", stored)))
    mono1 = _gray(decode_image(write_dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1")))
    assert mono2[0, 0] == 0 and mono2[0, -1] == 255
    assert (mono1 == 255 - mono2).all()


def test_dicom_without_suffix_is_found_by_magic(tmp_path):
    path = write_dicom(tmp_path / "scan.dcm", _ramp())
    bare = tmp_path / "scan"
    bare.write_bytes(path.read_bytes())
    assert is_dicom(bare)
    assert (np.asarray(decode_image(bare)) == np.asarray(decode_image(path))).all()


def test_dicom_without_pydicom_names_the_extra(tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "x.dcm", _ramp())
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom -> ImportError
    with pytest.raises(DataError, match=r"pip install headstart\[dicom\]"):
        decode_image(path)


def test_corrupt_dicom(tmp_path):
    path = write_dicom(tmp_path / "x.dcm", _ramp())
    path.write_bytes(path.read_bytes()[:-300])  # pixel data cut short
    with pytest.raises(DataError, match="x.dcm: cannot decode DICOM"):
        decode_image(path)


def _lung_and_mediastinum(gray: np.ndarray) -> tuple[float, float]:
    h, w = gray.shape
    rows = slice(int(0.3 * h), int(0.6 * h))
    lungs = np.r_[gray[rows, int(0.2 * w) : int(0.35 * w)].ravel(), gray[rows, int(0.65 * w) : int(0.8 * w)].ravel()]
    return float(lungs.mean()), float(gray[rows, int(0.46 * w) : int(0.54 * w)].mean())


@pytest.mark.realdata
@pytest.mark.parametrize(
    "name",
    ["CR-MONO1-10-chest_acrnema_nopreamble.dcm", "montgomery_derived_DX_1024x841.dcm", "nih_cxr14_nofinding_DX.dcm"],
)
def test_real_dicom_shows_dark_lungs(name):
    pydicom = pytest.importorskip("pydicom")
    path = shared_data("dicom", name)
    img = decode_dicom(path)
    gray = _gray(img)
    assert gray.min() == 0 and gray.max() == 255
    lungs, mediastinum = _lung_and_mediastinum(gray)
    assert lungs < mediastinum - 50  # air-filled lungs display dark, the mediastinum bright
    if "MONO1" in name:
        ds = pydicom.dcmread(path, force=True)
        assert ds.PhotometricInterpretation == "MONOCHROME1"
        from headstart.data.decode import _ensure_transfer_syntax

        _ensure_transfer_syntax(ds)
        raw_lungs, raw_mediastinum = _lung_and_mediastinum(ds.pixel_array.astype(float))
        assert raw_lungs > raw_mediastinum  # the stored values are the other way round: we inverted


def test_decoding_in_threads_refuses_every_bomb_and_leaves_the_warning_filters(tmp_path, monkeypatch):
    """extract.loader.ThreadedBatches decodes side by side: the bomb filter must hold in every thread and the
    process-wide warning filters must come back as they were."""
    from concurrent.futures import ThreadPoolExecutor
    import warnings

    Image.new("L", (12, 12)).save(tmp_path / "bomb.png")  # 144 px: between 1x and 2x the limit below
    Image.new("L", (8, 8), 3).save(tmp_path / "fine.png")  # 64 px: under it
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    before = list(warnings.filters)

    def outcome(name: str) -> str:
        try:
            decode_image(tmp_path / name)
            return "decoded"
        except DataError:
            return "refused"

    names = ["bomb.png", "fine.png"] * 100
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(outcome, names))
    assert got == ["refused", "decoded"] * 100
    assert warnings.filters == before
