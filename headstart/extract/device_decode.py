"""`--decode device`: JPEGs decoded by torchvision on the extraction device (nvJPEG on CUDA), in batches.

With full-size JPEGs and a fast GPU, extraction is bound by the CPU workers' decode, not by the network. In
device mode the workers only read each JPEG's bytes and check its header; the main process decodes the whole
batch with one `torchvision.io.decode_jpeg` call and resizes/crops on the device. Everything the device path
would get wrong goes through the usual PIL path instead (inside the worker, or in the main process when the
device decoder refuses a file), so the two paths can mix within a batch:

- not a JPEG (PNG, DICOM, npz rows), or a header this module does not understand;
- EXIF orientation other than 1 (PIL applies it, nvJPEG does not), CMYK/YCCK, lossless or arithmetic coding;
- no end-of-image marker (truncated: PIL names the file in its error), or more pixels than PIL's bomb limit.

Resampling kernels differ slightly from PIL's (and PIL decodes large JPEGs at reduced DCT scale), so features
are close to, not equal to, the CPU path's; the decode mode is therefore part of the feature-set fingerprint.
torchvision 0.29 deprecates its image codecs in favour of TorchCodec; `decode_jpeg` still works and its warning
is silenced here (once TorchCodec's decoder is adopted, only `DeviceJpegDecoder._decode` changes).

The interface with the loader is narrow and one-way: workers call `jpeg_item` and the loader batches with
`collate_mixed`; the main-process `DeviceJpegDecoder` sees the loader's data set only as a `PilFallback` (its
geometries and its PIL path). This module never imports the loader.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Protocol

import torch
from PIL import ExifTags, Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as F

from headstart.backbones.types import Preprocessing
from headstart.data import imagemeta
from headstart.data.decode import DICOM_SUFFIXES
from headstart.data.imagemeta import ImageMeta
from headstart.data.types import ImageSource, Sample
from headstart.errors import ConfigError
from headstart.extract.device_hash import device_hashes
from headstart.extract.preprocess import crop_geometry, stack_channels_last

log = logging.getLogger(__name__)

JPEG_MAGIC = b"\xff\xd8\xff"
_DECODABLE_SOF = frozenset({0xC0, 0xC1, 0xC2})  # baseline, extended and progressive Huffman: what nvJPEG handles
_READ_MODES = {3: ImageReadMode.RGB, 1: ImageReadMode.GRAY}  # Preprocessing.channels -> decode_jpeg's mode
_TENSOR_INTERPOLATIONS = {"nearest": F.InterpolationMode.NEAREST, "bilinear": F.InterpolationMode.BILINEAR,
                          "bicubic": F.InterpolationMode.BICUBIC}


class PilFallback(Protocol):
    """What the main-process decoder needs from the loader's data set: the geometries to crop, and the PIL path
    for a file the device decoder refuses. It is all this module knows of `loader.DecodedImages`."""

    geometries: dict[str, Preprocessing]

    def decode_row(self, row: int) -> dict:
        """One row through PIL: `{"row", "ok", "error", "meta", <geometry key>: (C, S, S) uint8}`."""
        ...


@dataclass(frozen=True)
class JpegHeader:
    """What the markers before the first scan say about a JPEG."""

    sof: int  # start-of-frame marker (0xC0 baseline, 0xC2 progressive, ...)
    width: int
    height: int
    components: int  # 1 gray, 3 YCbCr, 4 CMYK/YCCK
    orientation: int  # EXIF orientation as PIL reads it; 1 when absent, 0 when not a number


def read_jpeg_header(data: bytes) -> JpegHeader | None:
    """What the markers before the first scan say; None when `data` is not a JPEG this module understands.

    PIL's lazy `Image.open` parses the markers (no pixel is decoded) and `getexif` reads the orientation exactly
    as the CPU path's `exif_transpose` will. Only the frame type, which PIL parses but does not keep, is read here.
    """
    sof = _frame_marker(data)
    if sof is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. corrupt EXIF: PIL is unsure of the file, so PIL's path takes it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # device_decodable checks the size
            with Image.open(io.BytesIO(data), formats=["JPEG"]) as img:
                orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
                return JpegHeader(sof=sof, width=img.width, height=img.height, components=len(img.getbands()),
                                  orientation=orientation if isinstance(orientation, int) else 0)
    except Exception:  # noqa: BLE001 - PIL raises many types on a bad header; the PIL path then decides
        return None


def _frame_marker(data: bytes) -> int | None:
    """The start-of-frame marker: walk the marker segments up to the first frame (None without one)."""
    if not data.startswith(JPEG_MAGIC):
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # not DHT, JPG or DAC
            return marker
        elif marker == 0xDA:  # a scan before any frame
            return None
        else:
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def device_decodable(data: bytes, header: JpegHeader | None = None) -> bool:
    """True when the device decoder gives the same image PIL would (orientation, colour, completeness).
    `header`: `read_jpeg_header(data)` when the caller has it already."""
    header = header or read_jpeg_header(data)
    if header is None or header.sof not in _DECODABLE_SOF or header.components not in (1, 3):
        return False
    if header.orientation != 1 or header.width * header.height > (Image.MAX_IMAGE_PIXELS or float("inf")):
        return False
    return data.rstrip(b"\x00\r\n ")[-2:] == b"\xff\xd9"  # truncated files go to PIL, which names them


def jpeg_item(source: ImageSource, sample: Sample, row: int) -> dict | None:
    """Worker side: the item carrying a file's JPEG bytes when the device decoder can take it; None sends the
    sample through PIL in the worker."""
    if sample.index >= 0 or sample.path.lower().endswith(DICOM_SUFFIXES):  # npz rows; DICOM is not JPEG-framed
        return None
    try:
        data = source.raw_bytes(sample)
    except OSError:
        return None  # PIL raises the one-line error naming the file
    header = read_jpeg_header(data)
    if not device_decodable(data, header):
        return None
    # The stored size, mode and file size come from the header; the hash follows from the device's pixels.
    meta = ImageMeta(width=header.width, height=header.height, mode="L" if header.components == 1 else "RGB",
                     bit_depth=8, file_size=len(data), format="JPEG")
    return {"row": row, "ok": True, "error": "", "meta": imagemeta.to_text(meta),
            "jpeg": torch.frombuffer(bytearray(data), dtype=torch.uint8)}


def check_device_resizable(preps: dict[str, Preprocessing]) -> None:
    """Refuse up front (per backbone name) an interpolation torchvision cannot apply to tensors, e.g. lanczos."""
    for name, prep in preps.items():
        if prep.interpolation not in _TENSOR_INTERPOLATIONS:
            raise ConfigError(f"--decode device cannot resize with {prep.interpolation!r} interpolation "
                              f"(backbone {name}); expected {', '.join(_TENSOR_INTERPOLATIONS)}; use --decode cpu")


def collate_mixed(items: list[dict], *, geometries: dict[str, Preprocessing]) -> dict:
    """Batch items of which some carry decoded crops (PIL path) and some only JPEG bytes.

    Crops are stacked for the PIL rows only (`pil_pos`), so no placeholder pixels cross the worker boundary;
    `DeviceJpegDecoder.complete` fills in the JPEG rows (`jpeg_pos`).
    """
    jpeg_pos = [i for i, item in enumerate(items) if "jpeg" in item]
    pil_pos = [i for i, item in enumerate(items) if "jpeg" not in item]
    batch = {
        "row": torch.tensor([item["row"] for item in items], dtype=torch.int64),
        "ok": torch.tensor([item["ok"] for item in items], dtype=torch.bool),
        "error": [item["error"] for item in items],
        "meta": [item["meta"] for item in items],
        "jpeg": [items[i]["jpeg"] for i in jpeg_pos],
        "jpeg_pos": torch.tensor(jpeg_pos, dtype=torch.int64),
        "pil_pos": torch.tensor(pil_pos, dtype=torch.int64),
    }
    for key, prep in geometries.items():
        batch[key] = (stack_channels_last([items[i][key] for i in pil_pos]) if pil_pos
                      else torch.empty(0, prep.channels, prep.input_size, prep.input_size, dtype=torch.uint8))
    return batch


def resize_center_crop_tensor(images: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """(N, C, h, w) uint8 -> (N, C, input_size, input_size): the geometry of `preprocess.resize_center_crop`
    (any `--crop`)."""
    h, w = images.shape[-2:]
    new_w, new_h, left, top = crop_geometry(w, h, prep)
    size = prep.input_size
    if (new_w, new_h) != (w, h):
        images = F.resize(images, [new_h, new_w], interpolation=_TENSOR_INTERPOLATIONS[prep.interpolation],
                          antialias=True)
    if left < 0 or top < 0:  # --crop pad: black borders, as PIL's crop outside the image gives
        pad = [-left, -top, left + size - new_w, top + size - new_h]  # left, top, right, bottom
        return F.pad(images, [max(0, p) for p in pad], fill=0)
    return images[..., top : top + size, left : left + size]


class DeviceJpegDecoder:
    """Main-process half of device mode: decode a batch's JPEG bytes on `device`, resize, crop, and merge them
    with the rows the workers already decoded through PIL."""

    def __init__(self, images: PilFallback, *, device: torch.device):
        self.images = images
        self.device = device
        self.n_device = 0  # images decoded by torchvision on the device
        self.n_fallback = 0  # JPEGs the device decoder refused, decoded by PIL in the main process

    def complete(self, batch: dict) -> dict:
        """A collated mixed batch -> the plain batch the CPU path produces, with every crop on the device.

        Each channel count the geometries need is decoded in its own mode: RGB, or GRAY for a grayscale
        (torchxrayvision) crop, which for a grey JPEG is its own plane, as on the PIL path."""
        n = len(batch["row"])
        ok, error, meta = batch["ok"].clone(), list(batch["error"]), list(batch["meta"])
        out = {}
        for key, prep in self.images.geometries.items():
            out[key] = torch.zeros(n, prep.channels, prep.input_size, prep.input_size, dtype=torch.uint8,
                                   device=self.device)
            if len(batch["pil_pos"]):
                out[key][batch["pil_pos"].to(self.device)] = batch[key].to(self.device, non_blocking=True)
        modes = sorted({prep.channels for prep in self.images.geometries.values()}, reverse=True)
        decoded = {c: self._decode(batch["jpeg"], _READ_MODES[c]) for c in modes}
        by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
        for k, pos in enumerate(batch["jpeg_pos"].tolist()):
            if all(decoded[c][k] is not None for c in modes):
                by_shape[tuple(decoded[modes[0]][k].shape[-2:])].append(k)
                continue
            self.n_fallback += 1  # PIL gives the crops, or the one-line error naming the file
            item = self.images.decode_row(int(batch["row"][pos]))
            ok[pos], error[pos], meta[pos] = item["ok"], item["error"], item["meta"]
            for key in self.images.geometries:
                out[key][pos] = item[key].to(self.device)
        for ks in by_shape.values():  # images of one size are resized together
            stacked = {c: torch.stack([decoded[c][k] for k in ks]) for c in modes}
            where = batch["jpeg_pos"][ks].to(self.device)
            for key, prep in self.images.geometries.items():
                out[key][where] = resize_center_crop_tensor(stacked[prep.channels], prep)
            for k, phash in zip(ks, device_hashes(stacked[modes[0]])):
                pos = int(batch["jpeg_pos"][k])
                meta[pos] = imagemeta.to_text(replace(imagemeta.from_text(meta[pos]), phash=phash))
            self.n_device += len(ks)
        return {"row": batch["row"], "ok": ok, "error": error, "meta": meta, **out}

    def _decode(self, blobs: list[torch.Tensor], mode: ImageReadMode) -> list[torch.Tensor | None]:
        """One batched decode; when it fails, file by file, so one refused file costs only itself."""
        if not blobs:
            return []
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torchvision\.io")
            return self._decode_batch(blobs, mode)

    def _decode_batch(self, blobs: list[torch.Tensor], mode: ImageReadMode) -> list[torch.Tensor | None]:
        try:
            return list(decode_jpeg(blobs, device=self.device, mode=mode))
        except RuntimeError:
            pass
        images: list[torch.Tensor | None] = []
        for blob in blobs:
            try:
                images.append(decode_jpeg(blob, device=self.device, mode=mode))
            except RuntimeError as exc:
                log.debug("decode_jpeg refused a file (%s); decoding it with PIL", exc)
                images.append(None)
        return images
