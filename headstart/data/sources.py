"""Image sources, auto-detected from the DATA argument.

- a folder with `train/` (and optionally `val/`, `test/`) sub-folders holding class folders (the Kaggle layout);
- a folder of class folders;
- a CSV manifest `path,label[,split][,group]`, paths relative to the CSV's folder;
- a MedMNIST-style `.npz` with `{split}_images` and `{split}_labels` ((N, L >= 2) labels: multi-label);
- a folder in the NIH ChestX-ray14 layout (`nih.py`) or the CheXpert layout (`chexpert.py`): multi-label;
- a CSV read with `--labels` or `--label-column/--label-sep` (`table.py`): multi-label.

A known CSV layout wins over class folders (a CheXpert folder also holds train/patientNNNNN/... folders), and
the log says which reader was chosen.

Each kind is read by its own module (`folders`, `manifest`, `npz`); this one detects the kind and checks what
every source must hold. DICOM files inside class folders or a manifest decode like any other image (see
`decode.py`). Every source lists its samples up front, sorted by id, so that splits and the cache row order do
not depend on the order in which a file system happens to list files.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from pathlib import Path

from headstart.data.chexpert import chexpert_source, is_chexpert
from headstart.data.folders import EXPECTED, flat_source, folder_source
from headstart.data.groups import compile_group_pattern
from headstart.data.manifest import manifest_source
from headstart.data.nih import nih_label_file, nih_source
from headstart.data.npz import npz_source
from headstart.data.options import SourceOptions
from headstart.data.table import table_source
from headstart.data.types import ImageSource
from headstart.errors import DataError

log = logging.getLogger(__name__)


# A folder read as this many classes or more, most of one or two images, is probably patient or study folders.
MANY_CLASSES, FEW_IMAGES = 100, 2


def load_source(data: str | os.PathLike, *, group_pattern: str | None = None,
                options: SourceOptions | None = None) -> ImageSource:
    """Detect the kind of `data` and list its samples (nothing is decoded yet).

    `group_pattern` is a regex on file stems giving the patient id (first capture group, else the whole
    match); without it, Kaggle-style names are recognised, and a manifest's `group` column always wins.
    Raises DataError (one line, naming the path) for anything malformed, ConfigError for a bad regex.
    """
    pattern = compile_group_pattern(group_pattern)
    source = detect_source(data, pattern=pattern, options=options)
    _check_classes(source)
    if pattern is not None:
        matched = sum(1 for s in source.samples if s.group)
        level = logging.WARNING if matched == 0 else logging.INFO
        log.log(level, "--group-pattern %r matched %d of %d file names", pattern.pattern, matched, len(source.samples))
    return source


def detect_source(data: str | os.PathLike, *, pattern: re.Pattern[str] | None = None,
                  unlabelled: bool = False, options: SourceOptions | None = None) -> ImageSource:
    """Detect the kind of `data` and list its samples, without `load_source`'s checks of the labels.

    With `unlabelled`, a folder holding images and no sub-folders is one unlabelled source (label -1): what
    `predict` is most often given, and useless for training.
    """
    path = Path(data).expanduser()
    if not path.exists():
        raise DataError(f"{path}: data path does not exist; {EXPECTED}")
    path = path.resolve()
    options = options or SourceOptions()
    options.validate()
    multilabel_csv = bool(options.labels or options.label_sep)
    if path.is_dir():
        if options.custom_columns:
            raise DataError(f"{path}: the column options (--labels, --label-column, --path-column...) read a CSV; "
                            "expected DATA to be the .csv file itself")
        label_file = nih_label_file(path)
        if label_file is not None:
            log.info("%s: NIH ChestX-ray14 layout (%s); reading its labels, not class folders", path, label_file.name)
            return nih_source(path, label_file, options)
        if is_chexpert(path):
            log.info("%s: CheXpert layout (train.csv with Path); reading its labels, not class folders", path)
            return chexpert_source(path, options)
        source: ImageSource = (flat_source(path) if unlabelled else None) or folder_source(path, pattern)
        _warn_patient_folders(source)
    elif path.suffix.lower() == ".csv":
        known = None if options.custom_columns else _known_layout(path, options)
        if known is not None:
            return known
        source = table_source(path, pattern, options) if multilabel_csv else manifest_source(path, pattern, options)
    elif path.suffix.lower() == ".npz":
        source = npz_source(path)
    else:
        raise DataError(f"{path}: is neither a folder, a .csv manifest nor a .npz file; {EXPECTED}")
    return source


def _known_layout(csv_path: Path, options: SourceOptions) -> ImageSource | None:
    """NIH's or CheXpert's own label file given as DATA: read its folder's layout (paths are relative to it)."""
    folder = csv_path.parent
    if csv_path == nih_label_file(folder):
        log.info("%s: NIH ChestX-ray14 label file; reading the NIH layout of %s", csv_path, folder)
        return nih_source(folder, csv_path, options)
    if csv_path.name in ("train.csv", "valid.csv") and is_chexpert(folder):
        log.info("%s: CheXpert label file; reading the CheXpert layout of %s (train.csv and valid.csv)", csv_path,
                 folder)
        return chexpert_source(folder, options)
    return None


def _warn_patient_folders(source: ImageSource) -> None:
    """Hundreds of "classes" of one or two images each are almost always patient or study folders."""
    counts = Counter(s.label for s in source.samples)
    if len(counts) >= MANY_CLASSES and sorted(counts.values())[len(counts) // 2] <= FEW_IMAGES:
        log.warning("%s: read as %d classes, most with %d image(s) or fewer; these look like patient or study "
                    "folders, not classes. For CheXpert pass the folder holding train.csv; for other labels pass a "
                    "CSV (--labels or --label-column)", source.root, len(counts), FEW_IMAGES)


def _check_classes(source: ImageSource) -> None:
    """Every source needs at least two classes with images to train a classifier (multi-label: two findings)."""
    counts = Counter(s.label for s in source.samples)
    if not source.samples:
        raise DataError(f"{source.root}: no images found; {EXPECTED}")
    if getattr(source, "multilabel", False):
        return  # readers refuse fewer than two findings; a finding without positives is warned of after splitting
    if len(counts) < 2:
        only = source.classes[next(iter(counts))]
        raise DataError(
            f"{source.root}: found images of one class only ({only!r}); expected at least two classes with images"
        )
