"""`--decode device` on the CPU (torchvision's libjpeg-turbo stands in for nvJPEG): features close to the PIL
path, its own fingerprint, and every file the device decoder must not take goes through PIL instead."""

from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image, ImageOps

from headstart.extract.config import ExtractConfig
from headstart.extract.device_decode import device_decodable, read_jpeg_header
from headstart.extract.runner import run_extract
from tests.cli_run import invoke

# Phantoms are decoded by the same libjpeg-turbo either way and torch's uint8 antialiased bilinear resize
# follows PIL's, so rows agree to ~1e-6 in cosine here (measured); real full-size JPEGs, which PIL draft-decodes
# at reduced DCT scale, measured >= 0.99997. The bound leaves room for other resize kernels (bicubic, CUDA).
MIN_COSINE = 0.999
BASE = ["--weights", "random", "--image-size", "32", "--batch-size", "8", "--workers", "0"]


def jpeg_bytes(img: Image.Image, **save: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **save)
    return buf.getvalue()


def gray(size: tuple[int, int] = (24, 16)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, size[::-1], dtype=np.uint8), mode="L")


def config(decode: str, **overrides) -> ExtractConfig:
    options = dict(backbones=["resnet18"], weights="random", image_size=32, batch_size=8, workers=0,
                   feature_dtype="float32", decode=decode)
    return ExtractConfig(**{**options, **overrides})


def read_set(path: Path) -> tuple[list[str], np.ndarray, dict]:
    with h5py.File(path, "r") as f:
        ids = [x.decode() for x in f["samples/id"][...]]
        return ids, f["features/resnet18"][...], json.loads(f["features/resnet18"].attrs["preprocessing"])


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))



def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Error:")]


def decode_counts(caplog) -> str:
    return " ".join(r.getMessage() for r in caplog.records if r.getMessage().startswith("--decode device:"))


@pytest.fixture(scope="module")
def small_phantoms(tmp_path_factory) -> Path:
    from headstart.data.synthetic import make_phantom_dataset

    return make_phantom_dataset(tmp_path_factory.mktemp("dd") / "cxr", n_train=20, n_test=6, val=4, image_size=40)


@pytest.fixture(scope="module")
def both_caches(small_phantoms, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("caches")
    for mode in ("cpu", "device"):
        run_extract(data=str(small_phantoms), output=str(out / f"{mode}.h5"), config=config(mode))
    return {mode: out / f"{mode}.h5" for mode in ("cpu", "device")}


def edited_copy(src: Path, dst: Path) -> tuple[Path, list[Path]]:
    shutil.copytree(src, dst)
    return dst, sorted(dst.glob("train/PNEUMONIA/*.jpeg"))


# ------------------------------------------------------------------------------------------ header checks


def test_header_check_takes_plain_jpegs_and_refuses_what_pil_must_decode():
    img = gray()
    plain = jpeg_bytes(img)
    header = read_jpeg_header(plain)
    assert (header.width, header.height, header.components, header.orientation) == (24, 16, 1, 1)
    assert device_decodable(plain)
    assert device_decodable(jpeg_bytes(img.convert("RGB"), progressive=True))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: PIL applies it, decode_jpeg would not
    assert read_jpeg_header(jpeg_bytes(img, exif=exif)).orientation == 6
    assert not device_decodable(jpeg_bytes(img, exif=exif))
    exif[0x0112] = 1
    assert device_decodable(jpeg_bytes(img, exif=exif))
    assert not device_decodable(jpeg_bytes(Image.new("CMYK", (8, 8), (10, 20, 30, 40))))
    assert not device_decodable(plain[: len(plain) // 2])  # truncated: no end-of-image marker
    png = io.BytesIO()
    img.save(png, "PNG")
    assert not device_decodable(png.getvalue()) and not device_decodable(b"")


@pytest.mark.parametrize(("marker", "taken"), [(0xC1, True), (0xC3, False), (0xC9, False), (0xCA, False)])
def test_only_huffman_frames_go_to_the_device(marker, taken):
    plain = jpeg_bytes(gray())
    sof = plain.index(b"\xff\xc0")
    patched = plain[: sof + 1] + bytes([marker]) + plain[sof + 2 :]  # extended, lossless, arithmetic
    assert read_jpeg_header(patched).sof == marker
    assert device_decodable(patched) is taken


def test_xmp_orientation_goes_through_pil():
    """PIL's exif_transpose also honours an orientation stated only in XMP; the device decoder would ignore it."""
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')
    data = jpeg_bytes(gray(), xmp=xmp)
    assert ImageOps.exif_transpose(Image.open(io.BytesIO(data))).size == (16, 24)  # PIL rotates it
    assert read_jpeg_header(data).orientation == 6 and not device_decodable(data)


def test_unreadable_exif_goes_through_pil():
    exif = Image.Exif()
    exif[0x0112] = 1
    data = jpeg_bytes(gray(), exif=exif)
    tiff = data.index(b"Exif\x00\x00") + 6
    broken = data[:tiff] + b"II\x2a\x00\xff\xff\xff\x7f" + data[tiff + 8 :]  # IFD0 offset past the block's end
    assert device_decodable(data) and not device_decodable(broken)


# ------------------------------------------------------------------------------------------- end to end


def test_device_decode_features_match_the_pil_path(both_caches, caplog):
    ids_cpu, cpu, prep_cpu = read_set(both_caches["cpu"])
    ids_dev, dev, prep_dev = read_set(both_caches["device"])
    assert ids_cpu == ids_dev
    assert np.isfinite(dev).all() and not np.array_equal(dev, np.zeros_like(dev))
    assert cosine(cpu, dev).min() > MIN_COSINE
    assert "decode" not in prep_cpu and prep_dev["decode"] == "device"  # cpu-mode fingerprints are unchanged


def test_every_phantom_goes_through_the_device_decoder(small_phantoms, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="headstart.extract"):
        result = run_extract(data=str(small_phantoms), output=str(tmp_path / "c.h5"),
                             config=config("device", batch_size=32))
    assert f"{result.n_images} images decoded on cpu, 0 refused" in decode_counts(caplog)
    assert "meant for CUDA" in caplog.text


def test_cache_refuses_to_mix_decode_modes_without_overwrite(both_caches, small_phantoms, tmp_path):
    out = tmp_path / "c.h5"
    shutil.copy(both_caches["cpu"], out)
    refused = invoke("extract", str(small_phantoms), "-o", str(out), "-b", "resnet18", "--feature-dtype", "float32",
                     "--decode", "device", *BASE)
    assert refused.exit_code == 1, refused.output
    [error] = error_lines(refused.output)
    assert "fingerprint" in error and "--overwrite" in error
    same = invoke("extract", str(small_phantoms), "-o", str(out), "-b", "resnet18", "--feature-dtype", "float32",
                  *BASE)
    assert same.exit_code == 0 and "already complete" in same.output  # cpu mode still matches the cpu cache
    replaced = invoke("extract", str(small_phantoms), "-o", str(out), "-b", "resnet18", "--feature-dtype", "float32",
                      "--decode", "device", "--overwrite", *BASE)
    assert replaced.exit_code == 0, replaced.output
    assert read_set(out)[2]["decode"] == "device"


def test_png_and_exif_rotated_jpeg_fall_back_to_pil(small_phantoms, tmp_path, caplog):
    data, jpegs = edited_copy(small_phantoms, tmp_path / "mixed")
    png = jpegs[0].with_suffix(".png")
    Image.open(jpegs[0]).save(png)
    jpegs[0].unlink()
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = Image.open(jpegs[1])
    rotated.save(jpegs[1], "JPEG", exif=exif, quality=95)
    assert rotated.size[0] == rotated.size[1]  # square phantoms: rotation keeps the shape, so only PIL can see it
    caches = {}
    with caplog.at_level(logging.INFO, logger="headstart.extract"):
        for mode in ("cpu", "device"):
            caches[mode] = tmp_path / f"{mode}.h5"
            run_extract(data=str(data), output=str(caches[mode]), config=config(mode))
    assert "2 others (not plain JPEGs) decoded by PIL in the workers" in decode_counts(caplog)
    ids, cpu, _ = read_set(caches["cpu"])
    _, dev, _ = read_set(caches["device"])
    for path in (png, jpegs[1]):  # the same PIL decode in both modes: the rows are equal, not just close
        row = ids.index(path.relative_to(data).as_posix())
        np.testing.assert_array_equal(dev[row], cpu[row])
    assert cosine(cpu, dev).min() > MIN_COSINE


@pytest.mark.parametrize("damage", ["truncated", "bad_huffman_table"])
def test_corrupt_jpeg_fails_naming_the_file_or_is_skipped(small_phantoms, tmp_path, caplog, damage):
    data, jpegs = edited_copy(small_phantoms, tmp_path / "bad")
    raw = jpegs[2].read_bytes()
    if damage == "truncated":  # no end-of-image marker: the worker sends it through PIL
        jpegs[2].write_bytes(raw[: len(raw) // 2])
    else:  # the header walk passes, decode_jpeg refuses the table, then PIL does (in the main process)
        dht = raw.index(b"\xff\xc4")
        jpegs[2].write_bytes(raw[: dht + 4] + b"\xff" * 8 + raw[dht + 12 :])
        assert device_decodable(jpegs[2].read_bytes())
    failed = invoke("extract", str(data), "-o", str(tmp_path / "f.h5"), "--decode", "device", *BASE)
    assert failed.exit_code == 1, failed.output
    [error] = error_lines(failed.output)
    assert str(jpegs[2]) in error and "--on-bad-image skip" in error
    with caplog.at_level(logging.INFO, logger="headstart.extract"):
        skipped = invoke("extract", str(data), "-o", str(tmp_path / "s.h5"), "--decode", "device",
                         "--on-bad-image", "skip", *BASE)
    assert skipped.exit_code == 0, skipped.output
    assert "skipped 1 unreadable image(s)" in skipped.output and jpegs[2].name in skipped.output
    if damage == "bad_huffman_table":
        assert ", 1 refused by decode_jpeg and decoded by PIL" in decode_counts(caplog)


def test_npz_rows_never_reach_the_device_decoder(tmp_path):
    from headstart.backbones.types import Preprocessing
    from headstart.data.sources import load_source
    from headstart.data.synthetic import make_npz
    from headstart.extract.loader import DecodedImages

    source = load_source(make_npz(tmp_path / "m.npz", n_train=4, n_val=2, n_test=2))
    images = DecodedImages(source, source.samples, np.arange(3), [Preprocessing(input_size=16, resize_size=18)],
                           decode="device")
    assert all("jpeg" not in images[i] and images[i]["ok"] for i in range(3))


def test_a_grayscale_geometry_is_decoded_as_the_grey_plane(small_phantoms):
    """A one-channel (torchxrayvision) crop next to an RGB one: the device decoder reads the JPEG in GRAY mode,
    which for a grey X-ray is its own plane, the same pixels the PIL path crops (up to resampling)."""
    import torch

    from headstart.backbones.types import Preprocessing
    from headstart.data.sources import load_source
    from headstart.extract.device_decode import DeviceJpegDecoder
    from headstart.extract.loader import DecodedImages, geometry_key, make_loader

    source = load_source(small_phantoms)
    preps = [Preprocessing(input_size=16, resize_size=18),
             Preprocessing(input_size=16, resize_size=18, mean=(0.5,), std=(0.5 / 1024,), channels=1)]
    rgb, grey = (geometry_key(p) for p in preps)
    rows = np.arange(6)
    device = DecodedImages(source, source.samples, rows, preps, decode="device")
    batch = next(iter(make_loader(device, batch_size=6, workers=0, pin_memory=False)))
    decoder = DeviceJpegDecoder(device, device=torch.device("cpu"))
    done = decoder.complete(batch)
    assert decoder.n_device == 6 and done[rgb].shape == (6, 3, 16, 16) and done[grey].shape == (6, 1, 16, 16)
    assert torch.equal(done[grey][:, 0], done[rgb][:, 0])  # the grey plane, not a mix of three channels
    pil = DecodedImages(source, source.samples, rows, preps)
    expected = torch.stack([pil[i][grey] for i in range(6)])
    assert torch.equal(expected[:, 0], torch.stack([pil[i][rgb][0] for i in range(6)]))
    assert (done[grey].float() - expected.float()).abs().mean() < 2  # same plane, resampled by torch vs PIL
