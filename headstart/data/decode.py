"""Decode one image file (JPEG, PNG, TIFF, ..., DICOM) into an 8-bit RGB PIL image.

Every backbone takes 3-channel 8-bit input, so every mode a medical image set throws at us is normalised here,
once, in one place: extraction and fine-tuning both decode through `decode_image`. `decode_with_meta` is the
same decode that also returns the image's stored size, format and perceptual hash (see `imagemeta`).
"""

from __future__ import annotations

import logging
import os
import threading
import warnings

import numpy as np
from PIL import Image, ImageOps

from headstart.data.imagemeta import ImageMeta, meta_from_dicom, meta_from_pil, pil_header
from headstart.errors import DataError

log = logging.getLogger(__name__)

DICOM_SUFFIXES = (".dcm", ".dicom")
_DICOM_MAGIC_OFFSET = 128  # a DICOM Part 10 file has a 128-byte preamble, then b"DICM"


def is_dicom(path: str | os.PathLike) -> bool:
    """True for a `.dcm`/`.dicom` name or a file carrying the DICM magic after its preamble."""
    if str(path).lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(_DICOM_MAGIC_OFFSET + 4)
    except OSError:
        return False
    return head[_DICOM_MAGIC_OFFSET:] == b"DICM"


def decode_image(path: str | os.PathLike, *, min_size: int | None = None) -> Image.Image:
    """Decode `path` as an RGB image, applying EXIF orientation.

    `min_size` is the backbone's resize size: a JPEG larger than needed is decoded through PIL's draft mode at
    1/2, 1/4 or 1/8 scale, never below `min_size` on its shorter side. A 2,000 px chest X-ray that will be
    resized to 256 anyway then costs a fraction of a full decode. Raises DataError naming the file when the
    file is empty, truncated, corrupt or a decompression bomb.
    """
    return _decode(path, min_size=min_size, capture=False)[0]


def decode_with_meta(path: str | os.PathLike, *, min_size: int | None = None) -> tuple[Image.Image, ImageMeta]:
    """`decode_image` plus the image's `ImageMeta`: stored size (read before any draft decode), mode, bit depth,
    file size, format, DICOM tags, and the perceptual hash of the decoded pixels. Same decode, same errors."""
    img, meta = _decode(path, min_size=min_size, capture=True)
    assert meta is not None  # capture=True always fills it
    return img, meta


def _decode(path: str | os.PathLike, *, min_size: int | None, capture: bool) -> tuple[Image.Image, ImageMeta | None]:
    """The one decode path; with `capture` it also returns the metadata (the hash costs well under 1 ms)."""
    path = os.fspath(path)
    if path.lower().endswith(DICOM_SUFFIXES):
        return _decode_dicom(path, capture=capture)
    try:
        file_size = os.path.getsize(path)
        if file_size == 0:
            raise DataError(f"{path}: cannot decode image (empty file, 0 bytes)")
        with _open_refusing_bombs(path) as img:
            header = pil_header(img) if capture else None  # before draft() shrinks the size
            if min_size and img.format == "JPEG":
                img.draft(img.mode, (min_size, min_size))  # keeps both sides >= min_size
            img.load()  # inside the try: truncation only shows up when the pixels are read
            img = ImageOps.exif_transpose(img)
            rgb = to_rgb(img)
            # A grey image hashes as it is: its RGB copy converts back to the same grey values, at a cost.
            hashed = img if img.mode == "L" else rgb
            return rgb, (meta_from_pil(header, hashed, file_size=file_size) if header else None)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(
            f"{path}: refusing to decode a possible decompression bomb ({exc}); "
            "raise PIL.Image.MAX_IMAGE_PIXELS if the image is genuine"
        ) from None
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found; check the path or rescan the data folder") from None
    except DataError:
        raise
    except Image.UnidentifiedImageError:
        if is_dicom(path):  # DICOM without a .dcm suffix
            return _decode_dicom(path, capture=capture)
        raise DataError(f"{path}: cannot decode image (not a recognised image format)") from None
    except Exception as exc:  # PIL's decoders raise many types (OSError, SyntaxError, ValueError, ...) on bad bytes
        raise DataError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from None


_OPEN_LOCK = threading.Lock()


def _open_refusing_bombs(path: str) -> Image.Image:
    """`Image.open`, with PIL's decompression-bomb warning (between 1x and 2x its pixel limit) raised as an
    error: a bomb is refused rather than decoded. PIL checks the size when it opens the file, so only the open
    runs under the error filter; the lock keeps threads that decode side by side (extract.loader.ThreadedBatches)
    from interleaving `catch_warnings`, which saves and restores the process-wide filters."""
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(path)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB.

    Transparency is composited on black: medical images use black as "no signal", so transparent padding
    should look like the background, not like bright tissue. 16-bit and float images are scaled by their own
    value range (see `scale_to_uint8`).
    """
    if img.mode == "RGB":
        return img
    if img.mode in ("1", "L", "CMYK", "YCbCr", "LAB", "HSV"):
        return img.convert("RGB")
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(scale_to_uint8(np.asarray(img)), mode="L").convert("RGB")
    if img.mode == "P" and "transparency" not in img.info:
        return img.convert("RGB")
    if img.mode in ("LA", "La", "PA", "P", "RGBA", "RGBa"):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return img.convert("RGB")


def scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Map an array's own [min, max] onto [0, 255].

    Medical 16-bit PNG/TIFF files usually hold 10-14-bit data in a 16-bit container, so scaling by the
    container's bit depth would give an almost black image. The image's actual range is a full-range window,
    the same as a DICOM viewer shows without a stored window. A constant image maps to 0.
    """
    if arr.dtype == np.uint8:
        return arr
    arr = arr.astype(np.float64)
    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.round((np.nan_to_num(arr, nan=lo) - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def decode_dicom(path: str | os.PathLike) -> Image.Image:
    """Decode a DICOM file as an RGB image as a radiologist would see it.

    Applies the modality rescale (slope/intercept) and the stored VOI window or LUT, inverts MONOCHROME1
    (where high values are dark) and scales to 8 bits. Multi-frame files give their first frame.
    """
    return _decode_dicom(os.fspath(path), capture=False)[0]


def _decode_dicom(path: str, *, capture: bool) -> tuple[Image.Image, ImageMeta | None]:
    try:
        import pydicom
    except ImportError:
        raise DataError(
            f"{path}: is a DICOM file but pydicom is not installed; run `pip install headstart[dicom]`"
        ) from None
    apply_modality_lut, apply_voi_lut = _dicom_lut_functions()
    try:
        ds = pydicom.dcmread(path, force=True)  # force: ACR-NEMA style files have no preamble
        _ensure_transfer_syntax(ds)
        arr = ds.pixel_array
    except Exception as exc:  # pydicom raises many types on malformed or compressed-without-plugin data
        raise DataError(f"{path}: cannot decode DICOM pixel data ({type(exc).__name__}: {exc})") from None
    samples_per_pixel = int(ds.get("SamplesPerPixel", 1))
    if samples_per_pixel == 1:
        if arr.ndim == 3:
            log.debug("%s: %d frames, using the first", path, arr.shape[0])
            arr = arr[0]
        arr = apply_modality_lut(arr, ds)
        arr = apply_voi_lut(arr, ds)
        out = scale_to_uint8(np.asarray(arr, dtype=np.float64))
        if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
            out = 255 - out
        img = Image.fromarray(out, mode="L").convert("RGB")
    else:
        if arr.ndim == 4:
            arr = arr[0]
        img = Image.fromarray(scale_to_uint8(arr).reshape(arr.shape[0], arr.shape[1], -1)[..., :3], mode="RGB")
    return img, (meta_from_dicom(ds, img, file_size=os.path.getsize(path)) if capture else None)


def _dicom_lut_functions():
    """pydicom >= 3 moved the LUT helpers to `pydicom.pixels`; 2.x keeps them in `pixel_data_handlers.util`."""
    try:
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:
        from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut
    return apply_modality_lut, apply_voi_lut


def _ensure_transfer_syntax(ds) -> None:
    """Files without a preamble have no file meta; tell pydicom the encoding it actually read them with."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    encoding = getattr(ds, "original_encoding", None)  # pydicom >= 3: (is_implicit_VR, is_little_endian)
    implicit, little = encoding if encoding and None not in encoding else (ds.is_implicit_VR, ds.is_little_endian)
    meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    )
