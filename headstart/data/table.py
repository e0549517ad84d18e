"""A generic multi-label CSV: one column per finding (`--labels A,B,C`) or findings joined in one column
(`--label-column "Finding Labels" --label-sep "|"`), with `--path-column`, `--group-column`, `--split-column`.

Per-finding columns hold 1 / 0 / -1 (uncertain) / blank in any of their text forms (`labelcodes.py`). In the
joined form a listed finding is positive and every other negative; `No Finding` lists none, and an empty cell
leaves every finding blank (not mentioned). Paths are relative to the CSV's folder, as in a manifest.
"""

from __future__ import annotations

import re
from pathlib import Path

from headstart.data.folders import SPLIT_ALIASES, FileSource
from headstart.data.groups import group_from_name
from headstart.data.labelcodes import BLANK, NEGATIVE, POSITIVE, parse_cell
from headstart.data.options import SourceOptions
from headstart.data.tables import Row, cell, check_missing, find_column, labelled_source, read_csv, relative_id, resolve
from headstart.errors import DataError

NO_FINDING = "no finding"


def table_source(csv_path: Path, pattern: re.Pattern[str] | None, options: SourceOptions) -> FileSource:
    header, rows = read_csv(csv_path)
    path_col = find_column(header, options.path_column or "path", path=csv_path,
                           option="--path-column" if options.path_column else "")
    group_col = find_column(header, options.group_column or "group", path=csv_path, option="--group-column",
                            required=options.group_column is not None)
    split_col = find_column(header, options.split_column or "split", path=csv_path, option="--split-column",
                            required=options.split_column is not None)
    if options.labels:
        columns = [find_column(header, name, path=csv_path, option="--labels") for name in options.labels]
        names = [header[i] for i in columns]
        decode = _per_column(header, columns)
    else:
        joined = find_column(header, options.label_column or "label", path=csv_path, option="--label-column")
        names = _joined_names(rows, joined, options.label_sep or "|")
        decode = _joined(joined, names, options.label_sep or "|")
    if len(names) < 2:
        raise DataError(f"{csv_path}: found {len(names)} finding(s) ({', '.join(names) or 'none'}); a multi-label "
                        "task needs at least two (one label column is --label-column without --label-sep)")

    base = csv_path.parent
    found: list[Row] = []
    missing: list[str] = []
    for line, row in rows:
        where = f"{csv_path}, row {line}"
        text = cell(row, path_col)
        if not text:
            raise DataError(f"{where}: empty path; expected a file path in every row")
        split = cell(row, split_col).lower()
        if split and split not in SPLIT_ALIASES:
            raise DataError(f"{where}: split {cell(row, split_col)!r}; expected train, val, test or empty")
        codes = decode(row, where)
        file = resolve(text, base)
        if not file.is_file():
            missing.append(text)
            continue
        group = cell(row, group_col) or group_from_name(file.stem, pattern=pattern)
        found.append(Row(id=relative_id(file, base), file=file, codes=codes, split=SPLIT_ALIASES.get(split, ""),
                         group=group, where=where))
    check_missing(csv_path, missing, len(rows), allow_missing=options.allow_missing,
                  expected=f"expected paths relative to {base} or absolute")
    return labelled_source(csv_path, "table", names, found)


def _per_column(header: list[str], columns: list[int]):
    def decode(row: list[str], where: str) -> tuple[int, ...]:
        return tuple(parse_cell(cell(row, i), where=where, column=header[i]) for i in columns)
    return decode


def _tokens(text: str, sep: str) -> list[str]:
    return [t.strip() for t in text.split(sep) if t.strip() and t.strip().lower() != NO_FINDING]


def _joined_names(rows: list[tuple[int, list[str]]], column: int, sep: str) -> list[str]:
    """Every finding named anywhere in the column, sorted (the column order of the label matrix)."""
    return sorted({t for _, row in rows for t in _tokens(cell(row, column), sep)})


def _joined(column: int, names: list[str], sep: str):
    index = {name: i for i, name in enumerate(names)}

    def decode(row: list[str], where: str) -> tuple[int, ...]:
        text = cell(row, column)
        if not text:
            return (BLANK,) * len(names)
        codes = [NEGATIVE] * len(names)
        for token in _tokens(text, sep):
            codes[index[token]] = POSITIVE
        return tuple(codes)
    return decode
