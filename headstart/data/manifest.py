"""The CSV manifest source: `path,label[,split][,group]`, paths relative to the CSV's folder (or absolute).

`--path-column`, `--label-column`, `--split-column` and `--group-column` rename the columns, so a foreign CSV
needs no rewriting; the multi-label forms (`--labels`, `--label-sep`) are read by `table.py`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from headstart.data.folders import SPLIT_ALIASES, FileSource
from headstart.data.groups import group_from_name
from headstart.data.options import SourceOptions
from headstart.data.tables import check_missing, find_column, read_csv
from headstart.data.types import Sample
from headstart.errors import DataError


def manifest_source(csv_path: Path, pattern: re.Pattern[str] | None,
                    options: SourceOptions | None = None) -> FileSource:
    """List the rows of a CSV manifest; every named file must exist, and each image may appear once."""
    options = options or SourceOptions()
    base = csv_path.parent
    header, numbered = read_csv(csv_path, what="manifest")
    names = {"path": options.path_column or "path", "label": options.label_column or "label",
             "split": options.split_column or "split", "group": options.group_column or "group"}
    lowered = [c.lower() for c in header]
    missing = [names[c] for c in ("path", "label") if names[c].lower() not in lowered]
    if missing:
        raise DataError(
            f"{csv_path}: manifest is missing column(s) {', '.join(missing)} (found {', '.join(lowered) or 'none'}); "
            "expected a header line path,label[,split][,group] (or name them with --path-column, --label-column)"
        )
    col: dict[str, int] = {}
    for key, name in names.items():
        given = getattr(options, f"{key}_column") is not None  # a column the user named must exist
        index = find_column(header, name, path=csv_path, option=f"--{key}-column" if given else "",
                            required=given or key in ("path", "label"))
        if index is not None:
            col[key] = index

    entries: list[tuple[str, str, str, str, Path]] = []  # (id, label, split, group, file)
    missing_files: list[str] = []
    seen: dict[str, int] = {}
    for line, row in numbered:
        cell = {name: (row[i].strip() if i < len(row) else "") for name, i in col.items()}
        if not cell["path"]:
            raise DataError(f"{csv_path}: row {line} has an empty path; expected a file path in every row")
        if not cell["label"]:
            raise DataError(f"{csv_path}: row {line} has an empty label; expected a class name or integer in every row")
        split = cell.get("split", "").lower()
        if split and split not in SPLIT_ALIASES:
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
        entries.append((sample_id, cell["label"], SPLIT_ALIASES.get(split, ""), group, file))
    check_missing(csv_path, missing_files, len(entries) + len(missing_files), allow_missing=options.allow_missing,
                  expected=f"expected paths relative to {base} or absolute")
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
