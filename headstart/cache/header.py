"""What is at a cache path: nothing, a folder, something unreadable, another tool's HDF5 file, or a headstart cache.

`open_cache_file` classifies the file (`FileKind`) and, for a headstart cache, reads its header: root attributes,
the sample table and each feature set's attributes. It never raises for what it finds: the reader turns a bad kind
into its one-line error, the planner decides from it whether --overwrite may replace the file. Metadata is parsed
as JSON only.

Per-image metadata (`/samples/meta/<field>`, one dataset of length N per field; the fields, dtypes and missing
values are `headstart.data.imagemeta.META_FIELDS`) is read on demand by `read_meta`. A row with `width` <= 0 has
none (its image was skipped); a cache made before metadata existed has no group, which means "not recorded",
never damage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import h5py
import numpy as np

from headstart.cache.schema import (FEATURE_JSON_ATTRS, FEATURES, FORMAT_NAME, FORMAT_VERSION, LABEL_MATRIX,
                                    META_PATH, ROOT_PLAIN_ATTRS, SAMPLE_FIELDS, SAMPLES, VALID, journal_path,
                                    staging_dir)
from headstart.data.imagemeta import META_FIELDS, NUMPY_DTYPES
from headstart.errors import one_line

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class FileKind(Enum):
    """What a cache path holds. Only DAMAGED and CACHE are recognisably headstart caches."""

    MISSING = "missing"
    FOLDER = "folder"
    UNREADABLE = "unreadable"  # cannot be read as HDF5 at all: empty, junk, truncated, no permission
    FOREIGN = "foreign"  # a readable HDF5 file without format="headstart-cache": another tool's file
    NEWER = "newer"  # a headstart cache of a newer format version than this headstart reads
    DAMAGED = "damaged"  # a headstart cache whose metadata cannot be read
    CACHE = "cache"


@dataclass
class CacheHeader:
    """The kind of file at `path` and, for a readable cache, everything but the feature arrays."""

    path: Path
    kind: FileKind
    found: str = ""  # one clause naming the file and what was found, for kinds other than CACHE
    advice: str = ""  # what a reader of the file should do about it
    format_version: int = 0
    root_attrs: dict = field(default_factory=dict)  # plain scalars, JSON attributes decoded
    classes: list[str] = field(default_factory=list)
    ids: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    labels: np.ndarray = field(default_factory=lambda: np.array([], dtype=np.int64))
    splits: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    groups: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    task: str = ""  # binary | multiclass | multilabel (older caches: derived from the classes)
    label_matrix: np.ndarray | None = None  # multilabel: (N, L) int8 raw codes (schema.LABEL_MATRIX)
    feature_sets: dict[str, dict] = field(default_factory=dict)  # name -> attributes + name, dim, dtype, complete

    @property
    def message(self) -> str:
        """The reader's one-line error for a file it cannot use."""
        return f"{self.found}; {self.advice}" if self.advice else self.found


class _Damaged(Exception):
    """Raised inside header parsing of a file already known to be a headstart cache; carries `found`."""


def read_header(path: str | Path) -> CacheHeader:
    """The header of whatever is at `path` (the file is closed again)."""
    header, file = open_cache_file(path)
    if file is not None:
        file.close()
    return header


def open_cache_file(path: str | Path) -> tuple[CacheHeader, h5py.File | None]:
    """Classify `path`; for kind CACHE also return the open h5py file (the caller closes it)."""
    path = Path(path)
    kind, found, advice = _classify_bytes(path)
    if kind is not None:
        return CacheHeader(path, kind, found, advice), None
    file = None
    try:
        file = open_readonly(path)
        attrs = {k: _attr(v) for k, v in file.attrs.items()}  # unreadable root attributes: not recognisably ours
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError, KeyError or RuntimeError on damaged files
        if file is not None:
            file.close()
        return CacheHeader(path, FileKind.UNREADABLE, f"{path} is truncated or damaged and cannot be opened as "
                                                      f"HDF5 ({one_line(exc)})", "re-extract it into a new file"), None
    header = CacheHeader(path, FileKind.CACHE)
    try:
        _read_into(header, file, attrs)
    except Exception as exc:  # noqa: BLE001 - damaged metadata surfaces as any h5py/numpy error
        header.kind, header.advice = FileKind.DAMAGED, "re-extract it with --overwrite"
        header.found = str(exc) if isinstance(exc, _Damaged) else f"{path} is damaged: {one_line(exc)}"
    if header.kind is not FileKind.CACHE:
        file.close()
        return header, None
    return header, file


def open_readonly(path: str | Path) -> h5py.File:
    """Open `path` read-only without HDF5 file locking: a published file is only replaced by a rename (or changed
    in place under the undo journal, which readers refuse), so readers never block a writer. HDF5 opens a file
    twice in one process only with the same flags, so a notebook's own `h5py.File(path, "r")` flags are reused."""
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        if "file locking flag values don't match" not in str(exc):
            raise
        return h5py.File(path, "r")


def _classify_bytes(path: Path) -> tuple[FileKind | None, str, str]:
    """Kinds decided before HDF5 is asked: (None, "", "") when the file looks like HDF5."""
    if not path.exists():
        if staging_dir(path).is_dir():
            return (FileKind.MISSING, f"cache {path} does not exist yet: an extraction into it is in progress or was "
                    f"interrupted ({staging_dir(path)})", "wait for it, or rerun the same command")
        return FileKind.MISSING, f"cache {path} does not exist", f"create it with `headstart extract DATA -o {path}`"
    if journal_path(path).exists():  # an in-place add is running, or died: the file may be half-changed
        return (FileKind.UNREADABLE, f"{path} is being changed by an extraction, or one was interrupted "
                f"({journal_path(path)} exists)", "wait for it, or rerun the same `headstart extract` to repair it")
    if path.is_dir():
        return FileKind.FOLDER, f"{path} is a folder", "expected a cache file made by `headstart extract`"
    try:
        with open(path, "rb") as f:
            head = f.read(len(HDF5_SIGNATURE))
    except OSError as exc:
        return FileKind.UNREADABLE, f"cannot read {path} ({exc.strerror or exc})", ""
    if not head:
        return (FileKind.UNREADABLE, f"{path} is empty (0 bytes), probably from an interrupted copy",
                "re-extract it into a new file")
    if head != HDF5_SIGNATURE and not h5py.is_hdf5(str(path)):
        return (FileKind.UNREADABLE, f"{path} is not an HDF5 file",
                "expected a headstart feature cache made by `headstart extract`")
    return None, "", ""


def _read_into(header: CacheHeader, f: h5py.File, attrs: dict) -> None:
    """Fill `header` from an open HDF5 file; sets kind FOREIGN/NEWER/DAMAGED or raises _Damaged on a problem."""
    path = header.path
    if attrs.get("format") != FORMAT_NAME:
        header.kind, header.found = FileKind.FOREIGN, (f"{path} is an HDF5 file but not a headstart cache (no "
                                                       f"format='{FORMAT_NAME}' attribute)")
        header.advice = "expected a file made by `headstart extract`"
        return
    header.kind = FileKind.DAMAGED  # until the whole header has been read
    version = attrs.get("format_version")
    if not isinstance(version, int):
        raise _Damaged(f"{path} has no valid format_version")
    if version > FORMAT_VERSION:
        header.kind, header.found = FileKind.NEWER, (f"{path} was made by a newer headstart (format {version}, "
                                                     f"this one reads up to {FORMAT_VERSION})")
        header.advice = "upgrade headstart"
        return
    missing = [f"/{group} group" for group in (SAMPLES, FEATURES, VALID) if group not in f] or [
        f"/{SAMPLES}/{key}" for key in SAMPLE_FIELDS if key not in f[SAMPLES]]
    if missing:
        raise _Damaged(f"{path} has no {missing[0]}; it is damaged")
    header.root_attrs = {k: (v if k in ROOT_PLAIN_ATTRS else _json(v, f"root attribute {k!r} of {path}"))
                         for k, v in attrs.items()}
    header.format_version = version
    header.classes = list(header.root_attrs.get("classes", []))
    samples = f[SAMPLES]
    header.ids, header.splits, header.groups = (_strings(samples[key][()]) for key in ("id", "split", "group"))
    header.labels = np.asarray(samples["label"][()], dtype=np.int64)
    if LABEL_MATRIX in samples:
        header.label_matrix = np.asarray(samples[LABEL_MATRIX][()], dtype=np.int8)
    header.task = str(header.root_attrs.get("task") or ("multilabel" if header.label_matrix is not None else
                                                        "binary" if len(header.classes) <= 2 else "multiclass"))
    for name, ds in f[FEATURES].items():
        meta = {k: (_json(v, f"attribute {k!r} of feature set '{name}' in {path}") if k in FEATURE_JSON_ATTRS
                    else _attr(v)) for k, v in ds.attrs.items()}
        meta.update(name=name, dim=int(ds.shape[1]) if ds.ndim == 2 else 0, dtype=str(ds.dtype),
                    complete=bool(meta.get("complete", False)), shape=tuple(ds.shape))
        header.feature_sets[name] = meta
    header.kind = FileKind.CACHE


def _attr(value):
    """h5py attribute -> plain Python (bytes -> str, numpy scalars -> Python scalars)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _json(value, what: str):
    try:
        return json.loads(_attr(value))
    except (TypeError, ValueError):
        raise _Damaged(f"{what} is not valid JSON; the cache metadata is damaged") from None


def _strings(values) -> np.ndarray:
    return np.array([s.decode("utf-8", "replace") if isinstance(s, bytes) else str(s) for s in values], dtype=object)


@dataclass
class MetaTable:
    """The metadata columns a cache holds, and what was wrong with the ones that could not be used."""

    columns: dict[str, np.ndarray] = field(default_factory=dict)  # field -> (N,) array, only well-formed fields
    problems: list[str] = field(default_factory=list)  # one line per damaged or malformed field
    present: bool = False  # False: the cache predates metadata (no /samples/meta group)

    def has(self, *names: str) -> bool:
        return all(name in self.columns for name in names)

    def recorded_rows(self) -> np.ndarray:
        """Rows that carry metadata (their image was decoded): width > 0."""
        width = self.columns.get("width")
        return np.zeros(0, dtype=bool) if width is None else width > 0


def read_meta(file: h5py.File, n_rows: int) -> MetaTable:
    """Read every `/samples/meta/<field>` of an open cache file; unknown fields are ignored, bad ones reported."""
    group = file.get(META_PATH)
    if group is None:
        return MetaTable()
    table = MetaTable(present=True)
    for name, kind in META_FIELDS.items():
        if name not in group:
            continue
        where = f"/{META_PATH}/{name}"
        try:
            raw = group[name][()]
        except Exception as exc:  # noqa: BLE001 - a damaged chunk surfaces as any h5py error
            table.problems.append(f"{where} cannot be read ({type(exc).__name__}); re-extract to record it again")
            continue
        if raw.ndim != 1 or raw.shape[0] != n_rows:
            table.problems.append(f"{where} has shape {raw.shape}, expected ({n_rows},); re-extract to record it again")
        elif kind == "str":
            table.columns[name] = _strings(raw)
        elif raw.dtype.kind in "iuf":
            table.columns[name] = np.asarray(raw, dtype=NUMPY_DTYPES[kind])
        else:  # strings or compound data where numbers belong
            table.problems.append(f"{where} holds {raw.dtype} values, expected {kind}; re-extract to record it again")
    return table


def read_cache_meta(path, n_rows: int) -> MetaTable:
    """`read_meta` on a cache file by path (its own read-only handle; open it with FeatureCache first to validate)."""
    with open_readonly(path) as file:
        return read_meta(file, n_rows)
