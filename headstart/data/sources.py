"""Image sources, auto-detected from the DATA argument.

- a folder with `train/` (and optionally `val/`, `test/`) sub-folders holding class folders (the Kaggle layout);
- a folder of class folders;
- a CSV manifest `path,label[,split][,group]`, paths relative to the CSV's folder;
- a MedMNIST-style `.npz` with `{split}_images` and `{split}_labels`.

DICOM files inside class folders or a manifest decode like any other image (see `decode.py`). Every source
lists its samples up front, sorted by id, so that splits and the cache row order do not depend on the order
in which a file system happens to list files.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from headstart.data.decode import decode_image, decode_with_meta, is_dicom, scale_to_uint8
from headstart.data.imagemeta import ImageMeta, meta_from_array
from headstart.data.groups import compile_group_pattern, group_from_name
from headstart.data.types import SPLITS, ImageSource, Sample
from headstart.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".dcm", ".dicom"})
_SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_EXPECTED = "expected a folder of class folders (optionally inside train/val/test), a .csv manifest or a .npz file"


@dataclass
class FileSource:
    """One image per file: the folder layouts and the CSV manifest."""

    root: str  # the DATA argument, resolved
    kind: str  # "folder" | "split-folder" | "manifest"
    classes: list[str]
    samples: list[Sample]

    def load(self, sample: Sample, *, min_size: int | None = None) -> Image.Image:
        """Decode one sample as RGB; `min_size` lets large JPEGs decode at reduced scale (see decode_image)."""
        return decode_image(sample.path, min_size=min_size)

    def load_with_meta(self, sample: Sample, *, min_size: int | None = None) -> tuple[Image.Image, ImageMeta]:
        """`load` plus the file's metadata and perceptual hash, from the same decode."""
        return decode_with_meta(sample.path, min_size=min_size)

    def raw_bytes(self, sample: Sample) -> bytes:
        """The stored bytes, for content hashing (duplicate detection)."""
        with open(sample.path, "rb") as fh:
            return fh.read()


@dataclass
class NpzSource:
    """A MedMNIST-style array file: every sample is one row of `{split}_images`."""

    root: str
    classes: list[str]
    samples: list[Sample]
    kind: str = "npz"
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


def load_source(data: str | os.PathLike, *, group_pattern: str | None = None) -> ImageSource:
    """Detect the kind of `data` and list its samples (nothing is decoded yet).

    `group_pattern` is a regex on file stems giving the patient id (first capture group, else the whole
    match); without it, Kaggle-style names are recognised, and a manifest's `group` column always wins.
    Raises DataError (one line, naming the path) for anything malformed, ConfigError for a bad regex.
    """
    pattern = compile_group_pattern(group_pattern)
    path = Path(data).expanduser()
    if not path.exists():
        raise DataError(f"{path}: data path does not exist; {_EXPECTED}")
    path = path.resolve()
    if path.is_dir():
        source: ImageSource = _folder_source(path, pattern)
    elif path.suffix.lower() == ".csv":
        source = _manifest_source(path, pattern)
    elif path.suffix.lower() == ".npz":
        source = _npz_source(path)
    else:
        raise DataError(f"{path}: is neither a folder, a .csv manifest nor a .npz file; {_EXPECTED}")
    _check_classes(source)
    if pattern is not None:
        matched = sum(1 for s in source.samples if s.group)
        level = logging.WARNING if matched == 0 else logging.INFO
        log.log(level, "--group-pattern %r matched %d of %d file names", pattern.pattern, matched, len(source.samples))
    return source


# ----------------------------------------------------------------------------------------------- folders


def _folder_source(root: Path, pattern: re.Pattern[str] | None) -> FileSource:
    subdirs, loose = _scan_dir(root)
    split_dirs = {_SPLIT_ALIASES[d.name.lower()]: d for d in subdirs if d.name.lower() in _SPLIT_ALIASES}
    if split_dirs and "train" not in split_dirs:
        names = ", ".join(f"{name}/" for name in sorted(split_dirs))
        raise DataError(f"{root}: found {names} but no train/; expected {root}/train/<class>/... next to them")
    if split_dirs:
        kind = "split-folder"
        extra = [d.name for d in subdirs if d.name.lower() not in _SPLIT_ALIASES]
        if extra:
            log.warning("%s: ignoring folder(s) %s next to the split folders", root, ", ".join(extra))
        if loose:
            log.warning("%s: ignoring %d image(s) next to the split folders", root, len(loose))
        layout = [(name, d) for name, d in sorted(split_dirs.items(), key=lambda kv: SPLITS.index(kv[0]))]
    else:
        kind = "folder"
        layout = [("", root)]

    found: list[tuple[str, str, Path]] = []  # (split, class name, file)
    for split, split_dir in layout:
        class_dirs, loose_here = (subdirs, loose) if kind == "folder" else _scan_dir(split_dir)
        if not class_dirs:
            if loose_here:
                raise DataError(
                    f"found {len(loose_here)} images directly in {split_dir}; expected class sub-folders like "
                    f"{split_dir}/NORMAL/... or a CSV manifest"
                )
            raise DataError(f"{split_dir}: folder holds no class folders and no images; {_EXPECTED}")
        if loose_here:
            log.warning("%s: ignoring %d image(s) outside the class folders", split_dir, len(loose_here))
        for class_dir in class_dirs:
            files = _images_under(class_dir)
            if not files:
                log.warning("%s: class folder holds no images, skipped", class_dir)
            found.extend((split, class_dir.name, f) for f in files)

    classes = sorted({name for _, name, _ in found})
    index = {name: i for i, name in enumerate(classes)}
    samples = [
        Sample(
            id=f.relative_to(root).as_posix(),
            label=index[name],
            split=split,
            group=group_from_name(Path(f).stem, pattern=pattern),
            path=str(f),
        )
        for split, name, f in found
    ]
    samples.sort(key=lambda s: s.id)
    return FileSource(root=str(root), kind=kind, classes=classes, samples=samples)


def _is_hidden(name: str) -> bool:
    # ".DS_Store", AppleDouble "._x.jpeg", ".git"; "__MACOSX" is the resource-fork folder macOS zips carry.
    return name.startswith(".") or name == "__MACOSX"


def _is_image(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix in IMAGE_SUFFIXES or (suffix == "" and is_dicom(path))


def _scan_dir(folder: Path) -> tuple[list[Path], list[Path]]:
    """Visible sub-folders and image files directly inside `folder`, both sorted."""
    dirs, images = [], []
    for entry in sorted(folder.iterdir()):
        if _is_hidden(entry.name):
            continue
        if entry.is_dir():
            dirs.append(entry)
        elif entry.is_file() and _is_image(entry):
            images.append(entry)
    return dirs, images


def _images_under(folder: Path) -> list[Path]:
    """Every image file below `folder` (nested folders belong to the same class), sorted."""
    images, ignored = [], 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        for name in filenames:
            path = Path(dirpath) / name
            if not _is_hidden(name) and _is_image(path):
                images.append(path)
            else:
                ignored += 1
    if ignored:
        log.debug("%s: ignored %d hidden or non-image file(s)", folder, ignored)
    return sorted(images)


# ---------------------------------------------------------------------------------------------- manifest


def _manifest_source(csv_path: Path, pattern: re.Pattern[str] | None) -> FileSource:
    base = csv_path.parent
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:  # -sig: Excel writes a byte-order mark
            reader = csv.reader(fh)
            header = next(reader, None)
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{csv_path}: cannot read the manifest ({exc}); expected a UTF-8 CSV file") from None
    if header is None:
        raise DataError(f"{csv_path}: manifest is empty; expected a header line path,label[,split][,group]")
    columns = [c.strip().lower() for c in header]
    missing = [c for c in ("path", "label") if c not in columns]
    if missing:
        raise DataError(
            f"{csv_path}: manifest is missing column(s) {', '.join(missing)} (found {', '.join(columns) or 'none'}); "
            "expected a header line path,label[,split][,group]"
        )
    col = {name: columns.index(name) for name in ("path", "label", "split", "group") if name in columns}

    entries: list[tuple[str, str, str, str, Path]] = []  # (id, label, split, group, file)
    missing_files: list[str] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        if not any(cell.strip() for cell in row):
            continue  # blank line
        cell = {name: (row[i].strip() if i < len(row) else "") for name, i in col.items()}
        if not cell["path"]:
            raise DataError(f"{csv_path}: row {line} has an empty path; expected a file path in every row")
        if not cell["label"]:
            raise DataError(f"{csv_path}: row {line} has an empty label; expected a class name or integer in every row")
        split = cell.get("split", "").lower()
        if split and split not in _SPLIT_ALIASES:
            raise DataError(
                f"{csv_path}: row {line} has split {cell['split']!r}; expected train, val, test or empty"
            )
        file = Path(cell["path"]).expanduser()
        file = file if file.is_absolute() else base / file
        if not file.is_file():
            missing_files.append(cell["path"])
            continue
        try:
            sample_id = Path(os.path.relpath(file, base)).as_posix()
        except ValueError:  # another drive on Windows
            sample_id = file.as_posix()
        if sample_id in seen:
            raise DataError(
                f"{csv_path}: row {line} repeats {cell['path']!r} (first at row {seen[sample_id]}); "
                "expected each image once"
            )
        seen[sample_id] = line
        group = cell.get("group", "") or group_from_name(Path(file).stem, pattern=pattern)
        entries.append((sample_id, cell["label"], _SPLIT_ALIASES.get(split, ""), group, file))
    if missing_files:
        shown = ", ".join(missing_files[:3])
        raise DataError(
            f"{csv_path}: {len(missing_files)} row(s) name files that do not exist (e.g. {shown}); "
            f"expected paths relative to {base} or absolute"
        )
    if not entries:
        raise DataError(f"{csv_path}: manifest has no rows; expected one line per image after the header")

    raw_labels = sorted({label for _, label, _, _, _ in entries})
    if all(re.fullmatch(r"[+-]?\d+", label) for label in raw_labels):
        # Integer labels: class i must stay class i, so sort numerically ("10" after "9").
        values = sorted({int(label) for label in raw_labels})
        classes = [str(v) for v in values]
        to_class = {label: str(int(label)) for label in raw_labels}
    else:
        classes = raw_labels
        to_class = {label: label for label in raw_labels}
    index = {name: i for i, name in enumerate(classes)}
    samples = [
        Sample(id=sid, label=index[to_class[label]], split=split, group=group, path=str(file))
        for sid, label, split, group, file in entries
    ]
    samples.sort(key=lambda s: s.id)
    return FileSource(root=str(csv_path), kind="manifest", classes=classes, samples=samples)


# ------------------------------------------------------------------------------------------------- npz


def _npz_source(npz_path: Path) -> NpzSource:
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
            labels[split] = _check_labels(npz_path, split, raw, len(images))
        try:
            names = [str(c) for c in npz["classes"].tolist()] if "classes" in keys else None
        except ValueError as exc:
            raise DataError(f"{npz_path}: cannot read `classes` ({exc}); expected an array of strings") from None

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
            "(multi-label arrays are not supported)"
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


# --------------------------------------------------------------------------------------------- checks


def _check_classes(source: ImageSource) -> None:
    """Every source needs at least two classes with images to train a classifier."""
    counts = Counter(s.label for s in source.samples)
    if not source.samples:
        raise DataError(f"{source.root}: no images found; {_EXPECTED}")
    if len(counts) < 2:
        only = source.classes[next(iter(counts))]
        raise DataError(
            f"{source.root}: found images of one class only ({only!r}); expected at least two classes with images"
        )
