"""What every CSV-based reader shares: reading the file, finding columns, missing images, the labelled source.

The generic manifest (`manifest.py`, `table.py`) and the known layouts (`nih.py`, `chexpert.py`) differ only in
where their columns are and what their cells mean; the failure rules are written once here.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from headstart.data.folders import FileSource
from headstart.data.types import Sample
from headstart.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    """One image listed by a CSV, before the source is assembled."""

    id: str  # path relative to the data root (posix)
    file: Path  # absolute path of the image
    codes: tuple[int, ...]  # raw label codes, one per finding (labelcodes.py)
    split: str = ""
    group: str = ""
    where: str = ""  # "FILE, row N" for messages


def read_csv(path: Path, *, what: str = "CSV") -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header (stripped) and the non-blank rows with their 1-based line numbers; one DataError when unreadable."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: Excel writes a byte-order mark
            reader = csv.reader(fh)
            header = next(reader, None)
            rows = [(line, row) for line, row in enumerate(reader, start=2) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the {what} ({exc}); expected a UTF-8 CSV file") from None
    if header is None or not any(c.strip() for c in header):
        raise DataError(f"{path}: {what} is empty; expected a header line naming its columns")
    return [c.strip() for c in header], rows


def find_column(header: list[str], name: str, *, path: Path, option: str = "", required: bool = True) -> int | None:
    """The index of column `name` (exact, else case-insensitive); a missing required column is one DataError."""
    if name in header:
        return header.index(name)
    lowered = [c.lower() for c in header]
    if name.lower() in lowered:
        return lowered.index(name.lower())
    if not required:
        return None
    named = f"{option} column {name!r}" if option else f"column {name!r}"
    raise DataError(f"{path}: {named} does not exist (found {', '.join(header) or 'none'}); "
                    "expected one of the header's column names")


def cell(row: list[str], index: int | None) -> str:
    return row[index].strip() if index is not None and index < len(row) else ""


def resolve(path_text: str, base: Path) -> Path:
    file = Path(path_text).expanduser()
    return file if file.is_absolute() else base / file


def relative_id(file: Path, root: Path) -> str:
    try:
        return Path(os.path.relpath(file, root)).as_posix()
    except ValueError:  # another drive on Windows
        return file.as_posix()


def check_missing(where: Path, missing: list[str], total: int, *, allow_missing: bool, expected: str) -> None:
    """Rows whose image is absent: one error with the count, or with --allow-missing one warning with it.

    People often download only some archives of a large set (NIH ships twelve), so the count matters more than
    the list; three examples say where the images were looked for.
    """
    if not missing:
        return
    shown = ", ".join(missing[:3])
    present = total - len(missing)
    if not allow_missing:
        raise DataError(f"{where}: {len(missing)} row(s) name files that do not exist (e.g. {shown}); {expected} "
                        f"({present} of {total} rows have their image), or pass --allow-missing to use those")
    log.warning("%s: %d of %d row(s) name files that do not exist (e.g. %s); --allow-missing: using the %d present",
                where, len(missing), total, shown, present)


def labelled_source(root: Path, kind: str, names: list[str], rows: list[Row]) -> FileSource:
    """A multi-label FileSource from its rows: each image once, sorted by id."""
    if not rows:
        raise DataError(f"{root}: no images listed; expected at least one row whose image exists")
    seen: dict[str, str] = {}
    for row in rows:
        if row.id in seen:
            raise DataError(f"{row.where} repeats {row.id!r} (first at {seen[row.id]}); expected each image once")
        seen[row.id] = row.where
    samples = [Sample(id=r.id, label=0, split=r.split, group=r.group, path=str(r.file), labels=r.codes)
               for r in rows]
    samples.sort(key=lambda s: s.id)
    return FileSource(root=str(root), kind=kind, classes=list(names), samples=samples, multilabel=True)
