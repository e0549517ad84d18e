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
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as F

from headstart.backbones.types import Preprocessing
from headstart.errors import ConfigError
from headstart.extract.preprocess import crop_geometry

if TYPE_CHECKING:
    from headstart.extract.loader import DecodedImages

log = logging.getLogger(__name__)

DECODE_MODES = ("cpu", "device")
JPEG_MAGIC = b"\xff\xd8\xff"
_DECODABLE_SOF = frozenset({0xC0, 0xC1, 0xC2})  # baseline, extended and progressive Huffman: what nvJPEG handles
_ORIENTATION_TAG = 0x0112
_TENSOR_INTERPOLATIONS = {"nearest": F.InterpolationMode.NEAREST, "bilinear": F.InterpolationMode.BILINEAR,
                          "bicubic": F.InterpolationMode.BICUBIC}


@dataclass(frozen=True)
class JpegHeader:
    """What the markers before the first scan say about a JPEG."""

    sof: int  # start-of-frame marker (0xC0 baseline, 0xC2 progressive, ...)
    width: int
    height: int
    components: int  # 1 gray, 3 YCbCr, 4 CMYK/YCCK
    orientation: int  # EXIF orientation; 1 when absent, 0 when the EXIF block is unreadable


def read_jpeg_header(data: bytes) -> JpegHeader | None:
    """Walk the marker segments up to the first scan; None when `data` is not a JPEG this module understands."""
    if not data.startswith(JPEG_MAGIC):
        return None
    pos, orientation, frame = 2, 1, None
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        segment = data[pos + 4 : pos + 2 + length]
        if length < 2 or len(segment) != length - 2:
            return None
        if marker == 0xE1 and segment.startswith(b"Exif\x00\x00"):
            orientation = _exif_orientation(segment[6:])
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and len(segment) >= 6:
            frame = (marker, int.from_bytes(segment[3:5], "big"), int.from_bytes(segment[1:3], "big"), segment[5])
        elif marker == 0xDA:  # start of scan: the header is over
            break
        pos += 2 + length
    if frame is None:
        return None
    sof, width, height, components = frame
    return JpegHeader(sof=sof, width=width, height=height, components=components, orientation=orientation)


def _exif_orientation(tiff: bytes) -> int:
    """The orientation tag of IFD0 in a TIFF-structured EXIF block: 1 when absent, 0 when unreadable."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 0
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return 0
    for i in range(int.from_bytes(tiff[ifd : ifd + 2], order)):
        entry = tiff[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
        if len(entry) < 12:
            return 0
        if int.from_bytes(entry[0:2], order) == _ORIENTATION_TAG:
            return int.from_bytes(entry[8:10], order)  # a SHORT, left-aligned in the value field
    return 1


def device_decodable(data: bytes) -> bool:
    """True when the device decoder gives the same image PIL would (orientation, colour, completeness)."""
    header = read_jpeg_header(data)
    if header is None or header.sof not in _DECODABLE_SOF or header.components not in (1, 3):
        return False
    if header.orientation != 1 or header.width * header.height > (Image.MAX_IMAGE_PIXELS or float("inf")):
        return False
    return data.rstrip(b"\x00\r\n ")[-2:] == b"\xff\xd9"  # truncated files go to PIL, which names them


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
        "jpeg": [items[i]["jpeg"] for i in jpeg_pos],
        "jpeg_pos": torch.tensor(jpeg_pos, dtype=torch.int64),
        "pil_pos": torch.tensor(pil_pos, dtype=torch.int64),
    }
    for key, prep in geometries.items():
        batch[key] = (torch.stack([items[i][key] for i in pil_pos]) if pil_pos
                      else torch.empty(0, 3, prep.input_size, prep.input_size, dtype=torch.uint8))
    return batch


def resize_center_crop_tensor(images: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """(N, 3, h, w) uint8 -> (N, 3, input_size, input_size): the geometry of `preprocess.resize_center_crop`."""
    h, w = images.shape[-2:]
    new_w, new_h, left, top = crop_geometry(w, h, prep)
    if (new_w, new_h) != (w, h):
        images = F.resize(images, [new_h, new_w], interpolation=_TENSOR_INTERPOLATIONS[prep.interpolation],
                          antialias=True)
    return images[..., top : top + prep.input_size, left : left + prep.input_size]


class DeviceJpegDecoder:
    """Main-process half of device mode: decode a batch's JPEG bytes on `device`, resize, crop, and merge them
    with the rows the workers already decoded through PIL."""

    def __init__(self, images: DecodedImages, *, device: torch.device):
        self.images = images
        self.device = device
        self.n_device = 0  # images decoded by torchvision on the device
        self.n_fallback = 0  # JPEGs the device decoder refused, decoded by PIL in the main process

    def complete(self, batch: dict) -> dict:
        """A collated mixed batch -> the plain batch the CPU path produces, with every crop on the device."""
        n = len(batch["row"])
        ok, error = batch["ok"].clone(), list(batch["error"])
        out = {}
        for key, prep in self.images.geometries.items():
            out[key] = torch.zeros(n, 3, prep.input_size, prep.input_size, dtype=torch.uint8, device=self.device)
            if len(batch["pil_pos"]):
                out[key][batch["pil_pos"].to(self.device)] = batch[key].to(self.device, non_blocking=True)
        decoded = self._decode(batch["jpeg"])
        by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
        for k, (pos, image) in enumerate(zip(batch["jpeg_pos"].tolist(), decoded)):
            if image is not None:
                by_shape[tuple(image.shape[-2:])].append(k)
                continue
            self.n_fallback += 1  # PIL gives the crops, or the one-line error naming the file
            item = self.images.decode_row(int(batch["row"][pos]))
            ok[pos], error[pos] = item["ok"], item["error"]
            for key in self.images.geometries:
                out[key][pos] = item[key].to(self.device)
        for ks in by_shape.values():  # images of one size are resized together
            stacked = torch.stack([decoded[k] for k in ks])
            where = batch["jpeg_pos"][ks].to(self.device)
            for key, prep in self.images.geometries.items():
                out[key][where] = resize_center_crop_tensor(stacked, prep)
            self.n_device += len(ks)
        return {"row": batch["row"], "ok": ok, "error": error, **out}

    def _decode(self, blobs: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """One batched decode; when it fails, file by file, so one refused file costs only itself."""
        if not blobs:
            return []
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torchvision\.io")
            return self._decode_batch(blobs)

    def _decode_batch(self, blobs: list[torch.Tensor]) -> list[torch.Tensor | None]:
        try:
            return list(decode_jpeg(blobs, device=self.device, mode=ImageReadMode.RGB))
        except RuntimeError:
            pass
        images: list[torch.Tensor | None] = []
        for blob in blobs:
            try:
                images.append(decode_jpeg(blob, device=self.device, mode=ImageReadMode.RGB))
            except RuntimeError as exc:
                log.debug("decode_jpeg refused a file (%s); decoding it with PIL", exc)
                images.append(None)
        return images
