"""The decode side of extraction: each image is decoded once and cropped for every input geometry.

Workers never raise: a bad image comes back flagged with its error message, and the main process applies
`--on-bad-image`. (A DataLoader re-raises worker exceptions with the worker's traceback in the message,
which would break the one-line error contract.) In `--decode device` mode workers ship the bytes of plain
JPEGs instead of pixels, and the main process decodes them on the device (see `device_decode`).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from headstart.backbones.types import Preprocessing
from headstart.data.decode import DICOM_SUFFIXES
from headstart.data.types import ImageSource, Sample
from headstart.errors import HeadstartError
from headstart.extract.device_decode import collate_mixed, device_decodable
from headstart.extract.preprocess import to_uint8_tensor


def geometry_key(prep: Preprocessing) -> str:
    """Backbones that share a geometry share one decoded tensor; normalisation stays per backbone."""
    return f"{prep.input_size}-{prep.resize_size}-{prep.interpolation}"


class DecodedImages(Dataset):
    """Rows of a data set, decoded once and cropped for each distinct backbone geometry."""

    def __init__(self, source: ImageSource, samples: list[Sample], rows: np.ndarray, preps: list[Preprocessing], *,
                 decode: str = "cpu"):
        self.source = source
        self.decode = decode  # cpu: PIL decodes everything here; device: plain JPEGs leave as bytes
        self.samples = samples
        self.rows = np.asarray(rows, dtype=np.int64)
        self.geometries = {geometry_key(p): p for p in preps}
        # Draft-decode large JPEGs no smaller than the largest resize any backbone needs.
        self.min_size = max(p.resize_size for p in preps)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        row = int(self.rows[i])
        if self.decode == "device":
            data = self._jpeg_bytes(self.samples[row])
            if data is not None:
                jpeg = torch.frombuffer(bytearray(data), dtype=torch.uint8)
                return {"row": row, "ok": True, "error": "", "jpeg": jpeg}
        return self.decode_row(row)

    def _jpeg_bytes(self, sample: Sample) -> bytes | None:
        """The file's bytes when the device decoder can take them; None sends the sample through PIL."""
        if sample.index >= 0 or sample.path.lower().endswith(DICOM_SUFFIXES):  # npz rows; DICOM is not JPEG-framed
            return None
        try:
            data = self.source.raw_bytes(sample)
        except OSError:
            return None  # PIL raises the one-line error naming the file
        return data if device_decodable(data) else None

    def decode_row(self, row: int) -> dict:
        """The PIL path: decode one row and crop it for every geometry; a bad image comes back flagged."""
        sample = self.samples[row]
        item: dict = {"row": row, "ok": True, "error": ""}
        try:
            img = self.source.load(sample, min_size=self.min_size)
            for key, prep in self.geometries.items():
                item[key] = to_uint8_tensor(img, prep)
        except HeadstartError as exc:
            item.update(ok=False, error=str(exc))
        except Exception as exc:  # a decoder bug or exotic file must still name the file, not kill the run
            item.update(ok=False, error=f"{sample.path or sample.id}: cannot decode image ({type(exc).__name__}: {exc})")
        if not item["ok"]:
            for key, prep in self.geometries.items():
                item[key] = torch.zeros(3, prep.input_size, prep.input_size, dtype=torch.uint8)
        return item


def make_loader(dataset: DecodedImages, *, batch_size: int, workers: int, pin_memory: bool) -> DataLoader:
    """Ordered batches (resume relies on row order only through the staged row indices)."""
    collate = partial(collate_mixed, geometries=dataset.geometries) if dataset.decode == "device" else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=pin_memory,
        collate_fn=collate,
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )
