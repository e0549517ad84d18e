"""One image per file: the folder layouts (class folders, optionally inside train/val/test) and `FileSource`.

Files are listed up front and sorted by id, so splits and the cache row order do not depend on the order in which
a file system happens to list them. Hidden files and macOS resource forks are skipped.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from headstart.data.decode import decode_image, decode_with_meta, is_dicom
from headstart.data.imagemeta import ImageMeta
from headstart.data.groups import group_from_name
from headstart.data.types import SPLITS, Sample
from headstart.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".dcm", ".dicom"})
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
EXPECTED = "expected a folder of class folders (optionally inside train/val/test), a .csv manifest or a .npz file"


@dataclass
class FileSource:
    """One image per file: the folder layouts and the CSV manifest (see `manifest.py`)."""

    root: str  # the DATA argument, resolved
    kind: str  # "folder" | "split-folder" | "manifest" | "nih" | "chexpert" | "table"
    classes: list[str]  # class names, or the finding names of a multi-label source
    samples: list[Sample]
    multilabel: bool = False  # samples carry `labels`, one raw code per finding (see labelcodes.py)

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


def folder_source(root: Path, pattern: re.Pattern[str] | None) -> FileSource:
    """List a folder of class folders, or of train/val/test folders holding class folders (the Kaggle layout)."""
    subdirs, loose = _scan_dir(root)
    split_dirs = {SPLIT_ALIASES[d.name.lower()]: d for d in subdirs if d.name.lower() in SPLIT_ALIASES}
    if split_dirs and "train" not in split_dirs:
        names = ", ".join(f"{name}/" for name in sorted(split_dirs))
        raise DataError(f"{root}: found {names} but no train/; expected {root}/train/<class>/... next to them")
    if split_dirs:
        kind = "split-folder"
        extra = [d.name for d in subdirs if d.name.lower() not in SPLIT_ALIASES]
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
            raise DataError(f"{split_dir}: folder holds no class folders and no images; {EXPECTED}")
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


def flat_source(root: Path) -> FileSource | None:
    """The images directly inside `root` as unlabelled samples (label -1), or None when `root` has sub-folders.

    Training needs labels; applying a model does not, and "a folder of new images" is what it is given most.
    """
    subdirs, loose = _scan_dir(root)
    if subdirs or not loose:
        return None
    samples = [Sample(id=f.relative_to(root).as_posix(), label=-1, path=str(f)) for f in loose]
    return FileSource(root=str(root), kind="unlabelled-folder", classes=[], samples=samples)


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
