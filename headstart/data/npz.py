"""The MedMNIST-style `.npz` source: `{split}_images` and `{split}_labels` arrays, optionally `classes`.

Arrays are read without pickle, checked for shape and dtype up front, and reloaded lazily in DataLoader workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from headstart.data.decode import scale_to_uint8
from headstart.data.imagemeta import ImageMeta, meta_from_array
from headstart.data.labelcodes import codes_from_array
from headstart.data.types import SPLITS, Sample
from headstart.errors import DataError


@dataclass
class NpzSource:
    """A MedMNIST-style array file: every sample is one row of `{split}_images`."""

    root: str
    classes: list[str]
    samples: list[Sample]
    kind: str = "npz"
    multilabel: bool = False  # (N, L >= 2) label arrays (ChestMNIST): samples carry `labels`
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def load(self, sample: Sample, *, min_size: int | None = None) -> Image.Image:
        """The row as an RGB image; `min_size` is accepted for a uniform interface (rows are small)."""
        row = scale_to_uint8(self._row(sample))
        if row.ndim == 3 and row.shape[-1] == 1:
            row = row[..., 0]
        if row.ndim == 2:
            return Image.fromarray(row, mode="L").convert("RGB")
        return Image.fromarray(np.ascontiguousarray(row[..., :3]), mode="RGB")

    def load_with_meta(self, sample: Sample, *, min_size: int | None = None) -> tuple[Image.Image, ImageMeta]:
        """`load` plus the row's shape, dtype and perceptual hash."""
        img = self.load(sample)
        return img, meta_from_array(self._row(sample), img)

    def raw_bytes(self, sample: Sample) -> bytes:
        return np.ascontiguousarray(self._row(sample)).tobytes()

    def _row(self, sample: Sample) -> np.ndarray:
        # The array comes from the id ("train/00012"), not from `split`: carving may move the row to val/test.
        return self._images(sample.id.split("/", 1)[0])[sample.index]

    def _images(self, split: str) -> np.ndarray:
        if split not in self._arrays:
            with np.load(self.root, allow_pickle=False) as npz:
                self._arrays[split] = npz[f"{split}_images"]
        return self._arrays[split]

    def __getstate__(self) -> dict:
        # DataLoader workers reload the arrays lazily instead of receiving a pickled copy of every image.
        state = dict(self.__dict__)
        state["_arrays"] = {}
        return state


def npz_source(npz_path: Path) -> NpzSource:
    """Read a MedMNIST-style file, checking every image and label array up front (no pickle)."""
    try:
        npz = np.load(npz_path, allow_pickle=False)
    except Exception as exc:  # zipfile/numpy raise several types for a damaged archive
        raise DataError(f"{npz_path}: cannot read as a .npz archive ({type(exc).__name__}: {exc})") from None
    with npz:
        keys = sorted(npz.files)
        found = ", ".join(keys) or "none"
        present = [s for s in SPLITS if f"{s}_images" in keys or f"{s}_labels" in keys]
        needed = {"train_images", "train_labels"} | {f"{s}_{k}" for s in present for k in ("images", "labels")}
        absent = sorted(needed - set(keys))
        if absent:
            raise DataError(
                f"{npz_path}: missing key(s) {', '.join(absent)} (found {found}); "
                "expected MedMNIST-style {split}_images and {split}_labels arrays"
            )
        arrays: dict[str, np.ndarray] = {}
        labels: dict[str, np.ndarray] = {}
        for split in present:
            try:
                images, raw = npz[f"{split}_images"], npz[f"{split}_labels"]
            except ValueError as exc:  # object arrays need pickle, which we refuse
                raise DataError(f"{npz_path}: cannot read {split} arrays ({exc}); expected numeric arrays") from None
            arrays[split] = _check_images(npz_path, split, images)
            labels[split] = raw
        try:
            names = [str(c) for c in npz["classes"].tolist()] if "classes" in keys else None
        except ValueError as exc:
            raise DataError(f"{npz_path}: cannot read `classes` ({exc}); expected an array of strings") from None

    widths = {raw.shape[1] for raw in labels.values() if raw.ndim == 2 and raw.shape[1] >= 2}
    if widths:  # (N, L >= 2): one column per finding (ChestMNIST)
        return _multilabel(npz_path, present, labels, arrays, names, widths)
    labels = {split: _check_labels(npz_path, split, raw, len(arrays[split])) for split, raw in labels.items()}

    n_classes = max(int(lab.max()) for lab in labels.values() if len(lab)) + 1
    if names is None:
        names = [str(i) for i in range(n_classes)]
    elif len(names) < n_classes:
        raise DataError(
            f"{npz_path}: labels go up to {n_classes - 1} but `classes` names only {len(names)}; "
            "expected one name per label value"
        )
    samples = [
        Sample(id=f"{split}/{i:05d}", label=int(lab), split=split, path=str(npz_path), index=i)
        for split in present
        for i, lab in enumerate(labels[split])
    ]
    return NpzSource(root=str(npz_path), classes=names, samples=samples, _arrays=arrays)


def _multilabel(npz_path: Path, present: list[str], labels: dict[str, np.ndarray], arrays: dict[str, np.ndarray],
                names: list[str] | None, widths: set[int]) -> NpzSource:
    """ChestMNIST-style (N, L) label arrays: raw codes per finding, names from `classes` or the column numbers."""
    n_labels = max(widths)
    if names is None:
        names = [str(i) for i in range(n_labels)]
    if len(names) != n_labels:
        raise DataError(f"{npz_path}: labels have {n_labels} columns but `classes` names {len(names)}; "
                        "expected one name per label column")
    samples = []
    for split in present:
        raw = labels[split]
        if raw.ndim != 2 or raw.shape[1] != n_labels or len(raw) != len(arrays[split]):
            raise DataError(f"{npz_path}: {split}_labels has shape {raw.shape} for {len(arrays[split])} images; "
                            f"expected ({len(arrays[split])}, {n_labels}) like the other splits")
        codes = codes_from_array(raw, where=f"{npz_path}: {split}_labels", names=names)
        samples.extend(Sample(id=f"{split}/{i:05d}", label=0, split=split, path=str(npz_path), index=i,
                              labels=tuple(int(c) for c in row)) for i, row in enumerate(codes))
    return NpzSource(root=str(npz_path), classes=names, samples=samples, multilabel=True, _arrays=arrays)


def _check_images(npz_path: Path, split: str, images: np.ndarray) -> np.ndarray:
    ok = images.ndim == 3 or (images.ndim == 4 and images.shape[-1] in (1, 3, 4))
    if not ok or images.dtype.kind not in "uif":
        raise DataError(
            f"{npz_path}: {split}_images has shape {images.shape} and dtype {images.dtype}; "
            "expected (N, H, W) or (N, H, W, 3) numeric (uint8) images"
        )
    return images


def _check_labels(npz_path: Path, split: str, raw: np.ndarray, n_images: int) -> np.ndarray:
    if raw.ndim == 2 and raw.shape[1] == 1:
        raw = raw[:, 0]
    if raw.ndim != 1:
        raise DataError(
            f"{npz_path}: {split}_labels has shape {raw.shape}; expected (N,) or (N, 1) class indices "
            "(or (N, L >= 2) multi-label arrays)"
        )
    if len(raw) != n_images:
        raise DataError(
            f"{npz_path}: {split}_images has {n_images} rows but {split}_labels has {len(raw)}; "
            "expected one label per image"
        )
    if raw.dtype.kind == "f" and np.all(np.isfinite(raw)) and np.all(raw == np.round(raw)):
        raw = raw.astype(np.int64)
    if raw.dtype.kind not in "iu":
        raise DataError(
            f"{npz_path}: {split}_labels has dtype {raw.dtype} with non-integer values; "
            "expected integer class indices 0..K-1"
        )
    if len(raw) and raw.min() < 0:
        raise DataError(f"{npz_path}: {split}_labels holds negative value {raw.min()}; expected indices 0..K-1")
    return raw.astype(np.int64)
