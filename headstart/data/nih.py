"""The NIH ChestX-ray14 layout: `Data_Entry_2017*.csv` (or the sample's `sample_labels.csv`) and PNGs below it.

- `Finding Labels` holds findings joined by `|`, or `No Finding`, which makes every finding negative. NIH
  labels carry no uncertainty and no blanks: every finding of every row is 1 or 0.
- `Patient ID` is the group, so carved splits keep a patient's images together.
- `train_val_list.txt` / `test_list.txt`, when present, are the official split: test is NIH's, val is carved
  from train_val by patient.
- Images are found anywhere below the folder (`images/`, `images_001/images/`...), by file name.
- NIH's header is not quoted (`OriginalImage[Width,Height]`), so it splits into two columns, like every data
  row; the reader only uses the three named columns, so the extra column does no harm.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from headstart.data.folders import FileSource, _is_hidden, _is_image
from headstart.data.labelcodes import NEGATIVE, POSITIVE
from headstart.data.options import SourceOptions
from headstart.data.tables import Row, check_missing, find_column, labelled_source, read_csv, relative_id
from headstart.errors import DataError

log = logging.getLogger(__name__)

# The 14 findings in the order of Wang et al. (2017) and NIH's README; NIH writes Pleural_Thickening.
FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
            "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")
NO_FINDING = "no finding"
SPLIT_LISTS = {"train_val_list.txt": "train", "test_list.txt": "test"}


def nih_label_file(root: Path) -> Path | None:
    """The label file that makes `root` an NIH folder, or None. Several Data_Entry files: the last by name."""
    entries = sorted(p for p in root.glob("Data_Entry_2017*.csv") if p.is_file())
    if entries:
        if len(entries) > 1:
            log.info("%s: several NIH label files (%s); reading the last, %s", root,
                     ", ".join(p.name for p in entries), entries[-1].name)
        return entries[-1]
    sample = root / "sample_labels.csv"
    return sample if sample.is_file() else None


def nih_source(root: Path, label_file: Path, options: SourceOptions) -> FileSource:
    header, rows = read_csv(label_file)
    index_col = find_column(header, "Image Index", path=label_file)
    finding_col = find_column(header, "Finding Labels", path=label_file)
    patient_col = find_column(header, "Patient ID", path=label_file)
    canonical = {name.lower().replace(" ", "_"): i for i, name in enumerate(FINDINGS)}
    images = _images_by_name(root)
    official = _official_split(root)

    found: list[Row] = []
    missing: list[str] = []
    for line, row in rows:
        where = f"{label_file}, row {line}"
        name = row[index_col].strip() if index_col < len(row) else ""
        if not name:
            raise DataError(f"{where}: empty `Image Index`; expected an image file name in every row")
        codes = [NEGATIVE] * len(FINDINGS)
        for token in (row[finding_col] if finding_col < len(row) else "").split("|"):
            token = token.strip()
            if not token or token.lower() == NO_FINDING:
                continue
            position = canonical.get(token.lower().replace(" ", "_"))
            if position is None:
                raise DataError(f"{where}, column 'Finding Labels': {token!r} is not one of NIH's 14 findings "
                                f"({', '.join(FINDINGS)}) or 'No Finding'")
            codes[position] = POSITIVE
        file = images.get(name)
        if file is None:
            missing.append(name)
            continue
        group = row[patient_col].strip() if patient_col < len(row) else ""
        found.append(Row(id=relative_id(file, root), file=file, codes=tuple(codes),
                         split=official.get(name, ""), group=group, where=where))
    check_missing(label_file, missing, len(rows), allow_missing=options.allow_missing,
                  expected=f"expected the PNGs anywhere below {root}")
    if official:
        log.info("%s: official split from %s", root, ", ".join(n for n in SPLIT_LISTS if (root / n).is_file()))
    return labelled_source(root, "nih", list(FINDINGS), found)


def _images_by_name(root: Path) -> dict[str, Path]:
    """Every image file below `root` by its file name (NIH names are unique across its twelve archives)."""
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        for name in filenames:
            path = Path(dirpath) / name
            if not _is_hidden(name) and name not in found and _is_image(path):
                found[name] = path
    return found


def _official_split(root: Path) -> dict[str, str]:
    """File name -> train/test from NIH's list files; empty when they are absent."""
    split: dict[str, str] = {}
    for list_name, name in SPLIT_LISTS.items():
        path = root / list_name
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    split[line.strip()] = name
    return split
