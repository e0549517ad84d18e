"""The CheXpert layout: `train.csv` (and `valid.csv`) whose `Path` is relative to the folder's parent.

CheXpert writes `CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg` for a folder named
`CheXpert-v1.0-small`, so paths resolve against the parent; a renamed folder still works (the first path part
is then replaced by the folder). The patient comes from the path. Every column but the metadata is a finding
with values 1 / 0 / -1 (uncertain) / blank, stored raw. `valid.csv` is the official validation set, a
`test.csv` (the later release's) the official test set. `--projection` keeps frontal or lateral views only.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from headstart.data.folders import FileSource
from headstart.data.groups import group_from_name
from headstart.data.labelcodes import parse_cell
from headstart.data.options import SourceOptions
from headstart.data.tables import Row, cell, check_missing, find_column, labelled_source, read_csv, relative_id
from headstart.errors import DataError

log = logging.getLogger(__name__)

CSV_SPLITS = {"train.csv": "train", "valid.csv": "val", "test.csv": "test"}
METADATA = ("path", "sex", "age", "frontal/lateral", "ap/pa")  # CheXpert's non-finding columns (lower case)
PATIENT = re.compile(r"(patient\d+)")


def is_chexpert(root: Path) -> bool:
    """A folder holding `train.csv` with a `Path` column (CheXpert's and MIMIC-CXR-JPG-style re-exports)."""
    train = root / "train.csv"
    if not train.is_file():
        return False
    try:
        header, _ = read_csv(train)
    except DataError:  # some other tool's unreadable train.csv: not CheXpert's
        return False
    return find_column(header, "Path", path=train, required=False) is not None


def chexpert_source(root: Path, options: SourceOptions) -> FileSource:
    names: list[str] | None = None
    found: list[Row] = []
    missing: list[str] = []
    total = dropped = 0
    for csv_name, split in CSV_SPLITS.items():
        path = root / csv_name
        if not path.is_file():
            continue
        header, rows = read_csv(path)
        path_col = find_column(header, "Path", path=path)
        view_col = find_column(header, "Frontal/Lateral", path=path, required=options.projection != "all")
        columns = [i for i, c in enumerate(header) if c.lower() not in METADATA and c]
        here = [header[i] for i in columns]
        if names is None:
            names = here
        elif here != names:
            raise DataError(f"{path}: finding columns {here} differ from train.csv's {names}; expected the same "
                            "columns in every CheXpert CSV")
        for line, row in rows:
            where = f"{path}, row {line}"
            if options.projection != "all" and cell(row, view_col).lower() != options.projection:
                dropped += 1
                continue
            total += 1
            text = cell(row, path_col)
            if not text:
                raise DataError(f"{where}: empty `Path`; expected an image path in every row")
            codes = tuple(parse_cell(cell(row, i), where=where, column=header[i]) for i in columns)
            file = _resolve(text, root)
            if not file.is_file():
                missing.append(text)
                continue
            match = PATIENT.search(text)
            group = match.group(1) if match else group_from_name(file.stem)
            found.append(Row(id=relative_id(file, root), file=file, codes=codes, split=split, group=group,
                             where=where))
    if not names:
        raise DataError(f"{root}/train.csv: no finding columns next to {', '.join(METADATA)}; expected CheXpert's "
                        "14 observations (or other label columns)")
    if options.projection != "all":
        log.info("%s: --projection %s kept %d rows, dropped %d", root, options.projection, total, dropped)
    check_missing(root / "train.csv", missing, total, allow_missing=options.allow_missing,
                  expected=f"expected `Path` relative to {root.parent} (CheXpert's own layout)")
    return labelled_source(root, "chexpert", names, found)


def _resolve(text: str, root: Path) -> Path:
    """`Path` against the folder's parent; for a renamed folder, its first part replaced by the folder."""
    rel = Path(text)
    if rel.is_absolute() or (rel.parts and rel.parts[0] == root.name):
        return root.parent / rel
    for candidate in (root.parent / rel, root / rel, root.joinpath(*rel.parts[1:])):
        if candidate.is_file():
            return candidate
    return root.parent / rel
