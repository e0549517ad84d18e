"""Per-image metadata that costs nothing extra to read while decoding, plus a 64-bit perceptual hash.

The shortcut audit (`headstart audit`) asks whether size, format or scanner alone predict the label, and which
images in different splits are near-identical. Both need facts about the file as it was stored, so they are
captured during the one decode every image already gets:
- width and height come from the file header, before any reduced-scale (draft) decode shrinks them;
- the perceptual hash is computed from the pixels that were decoded anyway (never a second decode).

The cache stores these as `/samples/meta/<field>` datasets of length N (see `META_FIELDS`); a row whose image
was skipped, or that has no metadata, holds the missing values (`MISSING`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

# field -> storage kind. "str": UTF-8 variable-length strings; "int": int64; "float": float64; "uint64": the hash.
META_FIELDS: dict[str, str] = {
    "width": "int",  # stored width in pixels, after EXIF orientation, before any draft decode
    "height": "int",
    "mode": "str",  # PIL mode as stored ("L", "RGB", "I;16", ...); DICOM: "L" or "RGB"
    "bit_depth": "int",  # bits per sample as stored (DICOM: BitsStored)
    "file_size": "int",  # bytes on disk (npz rows: bytes of the row's array)
    "format": "str",  # "JPEG", "PNG", "TIFF", "DICOM", "NPZ", ...
    "view_position": "str",  # DICOM ViewPosition (PA, AP, LL, ...); "" elsewhere
    "manufacturer": "str",  # DICOM Manufacturer
    "photometric": "str",  # DICOM PhotometricInterpretation (MONOCHROME1/2, RGB, ...)
    "pixel_spacing_y": "float",  # mm per pixel along rows (DICOM PixelSpacing, else ImagerPixelSpacing); NaN: absent
    "pixel_spacing_x": "float",
    "phash": "uint64",  # 64-bit DCT perceptual hash of the decoded grayscale image (see `perceptual_hash`)
}
MISSING = {"int": -1, "str": "", "float": float("nan"), "uint64": 0}  # values of a row without metadata
NUMPY_DTYPES = {"int": np.int64, "str": object, "float": np.float64, "uint64": np.uint64}

HASH_SIZE = 8  # 8 x 8 low-frequency DCT coefficients -> 64 bits
HASH_INPUT = 32  # the image is reduced to 32 x 32 before the DCT (4x oversampling of the kept frequencies)
# The first 8 rows of the orthonormal 32-point DCT-II matrix: C[k, n] = sqrt(2/N) cos(pi (2n + 1) k / 2N), row 0 / sqrt 2
_DCT_LOW = np.sqrt(2.0 / HASH_INPUT) * np.cos(
    np.pi * np.outer(np.arange(HASH_SIZE), 2 * np.arange(HASH_INPUT) + 1) / (2 * HASH_INPUT))
_DCT_LOW[0] /= np.sqrt(2.0)
_BITS = {"1": 1, "I": 32, "F": 32}  # bits per sample of PIL modes that are not 8-bit per channel


@dataclass(frozen=True)
class ImageMeta:
    """What `decode_with_meta` learns about one image; field meanings are in `META_FIELDS`."""

    width: int
    height: int
    mode: str
    bit_depth: int
    file_size: int
    format: str
    view_position: str = ""
    manufacturer: str = ""
    photometric: str = ""
    pixel_spacing_y: float = float("nan")
    pixel_spacing_x: float = float("nan")
    phash: int = 0


@dataclass(frozen=True)
class Header:
    """The stored size and mode of an image, read before decoding (and before draft mode rescales it)."""

    width: int
    height: int
    mode: str
    format: str


def pil_header(img: Image.Image) -> Header:
    """Header of a PIL image that is open but not yet drafted or loaded; EXIF rotations by 90 degrees swap sides."""
    width, height = img.size
    if img.getexif().get(0x0112) in (5, 6, 7, 8):  # the orientations exif_transpose turns by 90 degrees
        width, height = height, width
    return Header(width=width, height=height, mode=img.mode, format=str(img.format or ""))


def bit_depth(mode: str) -> int:
    """Bits per sample of a PIL mode (16 for the I;16 family, 8 for L, RGB, P, ...)."""
    if mode.startswith("I;16"):
        return 16
    return _BITS.get(mode, 8)


def perceptual_hash(img: Image.Image) -> int:
    """64-bit DCT hash (the classic pHash): grayscale, reduce to 32 x 32, keep the 8 x 8 lowest frequencies, one bit
    per coefficient above their median. Bit 63 is coefficient (0, 0).

    Re-encoding, mild resizing and brightness changes move few bits; different images differ in about half.
    The reduction is a box filter (an area average), which is what makes a draft-decoded JPEG hash like its
    full decode. Cost: about 0.2 ms on a decoded 224 px image (a quarter of its decode time).
    """
    # One BOX resize of the whole image (not reduce() by an integer factor first: a 90% copy then lands on another
    # factor and its hash moved up to 14 bits instead of 2). Grayscale first: a third of the pixels to average.
    gray = img if img.mode == "L" else img.convert("L")
    return hash_of_reduced(np.asarray(gray.resize((HASH_INPUT, HASH_INPUT), Image.Resampling.BOX)))


def hash_of_reduced(gray: np.ndarray) -> int:
    """The hash bits of a (32, 32) grayscale image already box-reduced (the tail of `perceptual_hash`, shared with
    the device decoder's reduction in `headstart.extract.device_hash`)."""
    gray = np.asarray(gray, dtype=np.float64)
    low = (_DCT_LOW @ gray @ _DCT_LOW.T).ravel()  # = scipy.fft.dctn(gray, norm="ortho")[:8, :8], minus call overhead
    middle = np.sort(low)[31:33]  # np.median of 64 values, without its overhead (a sixth of the hash's time)
    return int.from_bytes(np.packbits(low > (middle[0] + middle[1]) / 2).tobytes(), "big")


def meta_from_pil(header: Header, img: Image.Image, *, file_size: int) -> ImageMeta:
    """Metadata of a decoded file image: its stored header plus the hash of the decoded pixels."""
    return ImageMeta(width=header.width, height=header.height, mode=header.mode, bit_depth=bit_depth(header.mode),
                     file_size=int(file_size), format=header.format, phash=perceptual_hash(img))


def meta_from_dicom(ds, img: Image.Image, *, file_size: int) -> ImageMeta:
    """Metadata of a decoded DICOM dataset `ds` (pydicom): size, bits and the tags a shortcut may hide in."""
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing") or []
    try:
        spacing_y, spacing_x = (float(v) for v in list(spacing)[:2])
    except (TypeError, ValueError):  # absent, one value, or malformed: recorded as unknown
        spacing_y = spacing_x = float("nan")
    samples_per_pixel = int(ds.get("SamplesPerPixel", 1) or 1)
    return ImageMeta(
        width=int(ds.get("Columns", 0) or img.width), height=int(ds.get("Rows", 0) or img.height),
        mode="L" if samples_per_pixel == 1 else "RGB",
        bit_depth=int(ds.get("BitsStored", 0) or ds.get("BitsAllocated", 0) or 8), file_size=int(file_size),
        format="DICOM", view_position=_tag(ds, "ViewPosition"), manufacturer=_tag(ds, "Manufacturer"),
        photometric=_tag(ds, "PhotometricInterpretation"), pixel_spacing_y=spacing_y, pixel_spacing_x=spacing_x,
        phash=perceptual_hash(img),
    )


def meta_from_array(row: np.ndarray, img: Image.Image) -> ImageMeta:
    """Metadata of an array-file row (MedMNIST .npz): shape and dtype as stored; size is the row's bytes."""
    channels = row.shape[2] if row.ndim == 3 else 1
    mode = "L" if channels == 1 else "RGB"
    if row.dtype == np.uint16 and channels == 1:
        mode = "I;16"
    return ImageMeta(width=int(row.shape[1]), height=int(row.shape[0]), mode=mode, bit_depth=row.dtype.itemsize * 8,
                     file_size=int(row.nbytes), format="NPZ", phash=perceptual_hash(img))


def meta_columns(metas: Sequence[ImageMeta | None]) -> dict[str, np.ndarray]:
    """One array per `META_FIELDS` entry, in row order; None rows (skipped images) get the `MISSING` values."""
    rows = [vars(m) if m is not None else None for m in metas]  # the fields, in order (asdict deep-copies)
    columns = {}
    for name, kind in META_FIELDS.items():
        values = [MISSING[kind] if r is None else r[name] for r in rows]
        columns[name] = np.array(values, dtype=NUMPY_DTYPES[kind])
    return columns


def to_text(meta: ImageMeta | None) -> str:
    """One row's metadata as a short JSON string ("" for none): how it crosses the DataLoader's worker boundary,
    where any collate function passes strings through untouched (a dataclass, or a 64-bit hash in a tensor, would
    not survive `default_collate`)."""
    return "" if meta is None else json.dumps(list(vars(meta).values()))  # astuple would deep-copy: 20x slower


def from_text(text: str) -> ImageMeta | None:
    """Inverse of `to_text`."""
    return ImageMeta(*json.loads(text)) if text else None


def meta_records(metas: Sequence[ImageMeta | None]) -> np.ndarray:
    """(n,) structured array with one field per `META_FIELDS` entry (fixed-width unicode for strings, so it is
    saved and loaded without pickle): how a batch's metadata is staged next to its features."""
    columns = meta_columns(metas)
    dtype = [(name, columns[name].astype(str).dtype if kind == "str" else columns[name].dtype)
             for name, kind in META_FIELDS.items()]
    records = np.empty(len(metas), dtype=dtype)
    for name in META_FIELDS:
        records[name] = columns[name]
    return records


def record_columns(records: np.ndarray) -> dict[str, np.ndarray]:
    """Inverse of `meta_records`: one column per field, as `meta_columns` gives them. Raises ValueError when
    `records` is not a 1-d array with every field of `META_FIELDS`."""
    names = records.dtype.names or ()
    missing = [name for name in META_FIELDS if name not in names]
    if records.ndim != 1 or missing:
        raise ValueError(f"metadata records of shape {records.shape} lack fields {missing or '(none)'}")
    return {name: records[name].astype(NUMPY_DTYPES[kind]) for name, kind in META_FIELDS.items()}


def hamming(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Bitwise Hamming distance between uint64 hashes (broadcasting)."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)))


def _tag(ds, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()
