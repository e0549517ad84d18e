"""Per-image metadata in a cache: `/samples/meta/<field>`, one dataset of length N per field.

The fields, their dtypes and missing values are `headstart.data.imagemeta.META_FIELDS` (the table in
docs/reference/formats.md). A row with `width` <= 0 has no metadata (its image was skipped); a cache made before
metadata existed has no `/samples/meta`, which readers take as "not recorded", never as damage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import h5py
import numpy as np

from headstart.cache.schema import SAMPLES
from headstart.data.imagemeta import META_FIELDS, NUMPY_DTYPES

META = "meta"  # group inside /samples
META_PATH = f"{SAMPLES}/{META}"


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
        where = f"/{SAMPLES}/{META}/{name}"
        try:
            raw = group[name][()]
        except Exception as exc:  # noqa: BLE001 - a damaged chunk surfaces as any h5py error
            table.problems.append(f"{where} cannot be read ({type(exc).__name__}); re-extract to record it again")
            continue
        if raw.ndim != 1 or raw.shape[0] != n_rows:
            table.problems.append(f"{where} has shape {raw.shape}, expected ({n_rows},); re-extract to record it again")
            continue
        try:
            table.columns[name] = _as_kind(raw, kind)
        except (TypeError, ValueError):
            table.problems.append(f"{where} holds {raw.dtype} values, expected {kind}; re-extract to record it again")
    return table


def write_meta(file: h5py.File, columns: dict[str, np.ndarray]) -> None:
    """Write metadata columns (`headstart.data.imagemeta.meta_columns`) under /samples/meta of a writable file."""
    group = file.require_group(META_PATH)
    for name, values in columns.items():
        kind = META_FIELDS[name]
        if name in group:
            del group[name]
        if kind == "str":
            group.create_dataset(name, data=[str(v) for v in values], dtype=h5py.string_dtype("utf-8"))
        else:
            group.create_dataset(name, data=np.asarray(values, dtype=NUMPY_DTYPES[kind]))


def _as_kind(raw: np.ndarray, kind: str) -> np.ndarray:
    if kind == "str":
        return np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in raw], dtype=object)
    if raw.dtype.kind not in "iuf":  # strings or compound data where numbers belong
        raise TypeError(raw.dtype)
    return np.asarray(raw, dtype=NUMPY_DTYPES[kind])


def read_cache_meta(path, n_rows: int) -> MetaTable:
    """`read_meta` on a cache file by path (its own read-only handle; open it with FeatureCache first to validate)."""
    with h5py.File(path, "r", locking=False) as file:
        return read_meta(file, n_rows)
