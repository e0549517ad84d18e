"""The staging area of a resumable extraction: `<cache>.parts/` next to the cache file.

`state.json` records what is being extracted (manifest hash, N, and per set its fingerprint, dim and dtype).
Each finished batch is one `part-<seq>.npz` holding `rows`, `valid`, one `f__<set>` array per set and the rows'
image metadata (`meta`, structured, see `imagemeta.meta_records`; absent in parts staged before it existed), written
to a temporary name, fsync-ed and renamed. Under torchrun every rank stages into the same folder as
`part-<seq>-r<rank>.npz`, so names never collide across ranks (or hosts) and rank 0 publishes them all. A kill -9
therefore loses at most the batches in flight (the one being computed and, with `stager.WriteBehind`, the one
being staged); a part that is damaged anyway (zip CRC or shape check fails) is dropped and its rows are extracted
again. Later parts win over earlier ones for the same row, so a redone row never conflicts.
"""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headstart import io as durable
from headstart.cache.schema import STAGING_FORMAT, STAGING_STATE, STAGING_VERSION
from headstart.data.imagemeta import META_FIELDS
from headstart.errors import CacheError

logger = logging.getLogger(__name__)

PART_RE = re.compile(r"^part-(\d{8})(?:-r(\d+))?\.npz$")
FEATURE_KEY = "f__"  # npz member prefix of a set's feature array
META_KEY = "meta"  # npz member holding the rows' image metadata records


@dataclass
class StagedPart:
    """What one intact part file covers; its arrays are re-read when the cache is published."""

    path: Path
    seq: int
    rows: np.ndarray  # int64 row indices into the sample table
    sets: tuple[str, ...]  # feature sets present in this part
    rank: int = 0  # the torchrun rank that staged it (0 for a single process)

    @property
    def order(self) -> tuple[int, int]:
        """Publication order: later sequence numbers win; ranks stage disjoint rows, so their order is moot."""
        return self.seq, self.rank


@dataclass(frozen=True)
class StagedConflict:
    """Staged batches that belong to another request."""

    set_name: str | None  # the set staged with another fingerprint, dim or dtype; None: another sample table
    staged: dict  # the conflicting state.json (set_name None) or that set's entry in it


def same_table(state: dict | None, *, n_rows: int, manifest_hash: str) -> bool:
    """True when `state` (state.json) describes batches staged for this sample table."""
    return bool(state and state.get("version") == STAGING_VERSION and state.get("manifest_hash") == manifest_hash
                and state.get("n_rows") == n_rows)


def staged_conflict(state: dict | None, wanted: dict[str, dict], *, n_rows: int,
                    manifest_hash: str) -> StagedConflict | None:
    """Why the batches staged under `state` cannot be resumed for the `wanted` sets (name -> staged entry).

    The one staging compatibility rule: the planner refuses (or, with --overwrite, discards) on a conflict, and a
    joining rank requires none. Sets staged but not wanted, or wanted but not yet staged, are no conflict.
    """
    if state is None:
        return None
    if not same_table(state, n_rows=n_rows, manifest_hash=manifest_hash):
        return StagedConflict(None, state)
    for name, entry in wanted.items():
        staged = state["sets"].get(name)
        if staged is not None and _staged_key(staged) != _staged_key(entry):
            return StagedConflict(name, staged)
    return None


def _staged_key(entry: dict) -> tuple:
    return entry.get("fingerprint"), entry.get("dim"), entry.get("dtype")


class StagingArea:
    """Reads and writes the staging folder of one cache path. Only the lock holder writes or deletes."""

    def __init__(self, folder: str | Path, *, n_rows: int, manifest_hash: str, rank: int | None = None):
        self.folder = Path(folder)
        self.n_rows = n_rows
        self.manifest_hash = manifest_hash
        self.rank = rank  # None: a single process, parts are `part-<seq>.npz`
        self.parts: list[StagedPart] = []
        self._next_seq = 0

    # state.json -------------------------------------------------------------------------------------------
    def read_state(self) -> dict | None:
        """The recorded state, or None when there is none or it is unusable (JSON only, never pickle)."""
        file = self.folder / STAGING_STATE
        if not file.exists():
            return None
        try:
            state = json.loads(file.read_text("utf-8"))
            if state.get("format") != STAGING_FORMAT or not isinstance(state.get("sets"), dict):
                raise ValueError("not a headstart staging state")
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable staging state %s (%s)", file, exc)
            return None
        return state

    def compatible(self, state: dict | None) -> bool:
        """True when staged batches were made for this sample table and can be resumed."""
        return same_table(state, n_rows=self.n_rows, manifest_hash=self.manifest_hash)

    def write_state(self, sets: dict[str, dict]) -> None:
        self.folder.mkdir(exist_ok=True)
        state = {
            "format": STAGING_FORMAT,
            "version": STAGING_VERSION,
            "manifest_hash": self.manifest_hash,
            "n_rows": self.n_rows,
            "sets": sets,  # name -> {"fingerprint", "dim", "dtype"}
        }
        durable.write_bytes_atomic(self.folder / STAGING_STATE, json.dumps(state, indent=1).encode("utf-8"))

    # parts ------------------------------------------------------------------------------------------------
    def scan(self, sets: dict[str, dict], *, delete_damaged: bool) -> list[StagedPart]:
        """Find intact parts. Each is fully read once, so a torn or bit-flipped file is caught here (zip CRC)."""
        self.parts = []
        if not self.folder.is_dir():
            return self.parts
        for file in sorted(self.folder.iterdir()):
            match = PART_RE.match(file.name)
            if not match:
                if file.name.startswith(".") and delete_damaged:
                    file.unlink(missing_ok=True)  # a temporary file left by a killed writer
                continue
            seq, rank = int(match.group(1)), int(match.group(2) or 0)
            self._next_seq = max(self._next_seq, seq + 1)
            try:
                rows, _, feats = self._read_part(file, sets)
            except Exception as exc:  # noqa: BLE001 - any damage (zip, header, shape) means "redo these rows"
                logger.warning("staged batch %s is damaged (%s); its rows will be extracted again", file, exc)
                if delete_damaged:
                    file.unlink(missing_ok=True)
                continue
            self.parts.append(StagedPart(file, seq, rows, tuple(feats), rank))
        return self.parts

    def skip_existing_numbers(self) -> None:
        """Number new parts after every part file present, from the names alone (cheap: reads no data)."""
        if self.folder.is_dir():
            for file in self.folder.iterdir():
                match = PART_RE.match(file.name)
                if match:
                    self._next_seq = max(self._next_seq, int(match.group(1)) + 1)

    def done_mask(self, names: list[str]) -> np.ndarray:
        """Rows staged for every one of `names`."""
        done = {name: np.zeros(self.n_rows, dtype=bool) for name in names}
        for part in self.parts:
            for name in names:
                if name in part.sets:
                    done[name][part.rows] = True
        mask = np.ones(self.n_rows, dtype=bool)
        for name in names:
            mask &= done[name]
        return mask if names else np.ones(self.n_rows, dtype=bool)

    def write_part(self, rows: np.ndarray, valid: np.ndarray, features: dict[str, np.ndarray],
                   meta: np.ndarray | None = None) -> StagedPart:
        buffer = io.BytesIO()
        arrays = {"rows": rows, "valid": valid, **{FEATURE_KEY + k: v for k, v in features.items()}}
        if meta is not None:
            arrays[META_KEY] = meta
        np.savez(buffer, **arrays)
        suffix = "" if self.rank is None else f"-r{self.rank}"
        file = self.folder / f"part-{self._next_seq:08d}{suffix}.npz"
        durable.write_bytes_atomic(file, buffer.getvalue())
        part = StagedPart(file, self._next_seq, rows, tuple(features), self.rank or 0)
        self._next_seq += 1
        self.parts.append(part)
        return part

    def read_part(self, part: StagedPart, sets: dict[str, dict]):
        """(rows, valid, {set: features}) of one part, re-validated."""
        return self._read_part(part.path, sets)

    def read_meta(self, part: StagedPart) -> np.ndarray | None:
        """The metadata records of one part, in its row order (None: staged without them); raises on damage."""
        with np.load(part.path, allow_pickle=False) as npz:
            meta = np.asarray(npz[META_KEY]) if META_KEY in npz.files else None
        _check_meta(meta, len(part.rows))
        return meta

    def _read_part(self, file: Path, sets: dict[str, dict]):
        with np.load(file, allow_pickle=False) as npz:
            rows = np.asarray(npz["rows"])
            valid = np.asarray(npz["valid"])
            feats = {k[len(FEATURE_KEY):]: np.asarray(npz[k]) for k in npz.files if k.startswith(FEATURE_KEY)}
            meta = np.asarray(npz[META_KEY]) if META_KEY in npz.files else None  # read, so damage shows here
        n = len(rows)
        _check_meta(meta, n)
        if rows.ndim != 1 or rows.dtype.kind not in "iu" or valid.shape != (n,) or valid.dtype != bool:
            raise ValueError("bad rows/valid arrays")
        if n and (rows.min() < 0 or rows.max() >= self.n_rows or len(np.unique(rows)) != n):
            raise ValueError("row indices out of range or repeated")
        for name, arr in list(feats.items()):
            spec = sets.get(name)
            if spec is None:
                del feats[name]  # a set no longer being extracted
                continue
            if arr.shape != (n, spec["dim"]) or arr.dtype != np.dtype(spec["dtype"]):
                raise ValueError(f"set {name!r} has shape {arr.shape} {arr.dtype}, expected ({n}, {spec['dim']})")
        return rows.astype(np.int64), valid, feats

    def staged_rows(self) -> int:
        """How many distinct rows the intact parts cover, for `cache info` (reads only the `rows` arrays)."""
        seen = np.zeros(self.n_rows, dtype=bool)
        for file in self.folder.glob("part-*.npz"):
            try:
                with np.load(file, allow_pickle=False) as npz:
                    rows = np.asarray(npz["rows"])
                seen[rows[(rows >= 0) & (rows < self.n_rows)]] = True
            except Exception:  # noqa: BLE001 - damaged parts are simply not counted
                continue
        return int(seen.sum())

    def discard(self) -> None:
        """Remove the staging folder (after publishing, or when --overwrite drops a mismatched extraction)."""
        if self.folder.exists():
            shutil.rmtree(self.folder)
            durable.fsync_dir(self.folder.parent)
        self.parts = []
        self._next_seq = 0


def _check_meta(meta: np.ndarray | None, n: int) -> None:
    if meta is not None and (meta.shape != (n,) or not set(META_FIELDS) <= set(meta.dtype.names or ())):
        raise ValueError(f"metadata records of shape {meta.shape} and fields {meta.dtype.names} for {n} rows")


@contextmanager
def disk_errors(cache: Path, where: Path, staging: Path) -> Iterator[None]:
    """Turn out-of-space and other I/O failures while writing `where` into one-line CacheErrors.

    Staged batches and the published `cache` are never touched by a failure here, so the message says to rerun.
    """
    try:
        yield
    except CacheError:
        raise
    except OSError as exc:
        if durable.is_disk_full(exc) or _nearly_full(cache.parent):
            raise CacheError(disk_full_message(cache, where, staging)) from None
        raise CacheError(
            f"could not write {where} ({exc}); {cache} is unchanged; fix the problem and rerun the same command to "
            f"resume"
        ) from None


def disk_full_message(cache: Path, where: Path, staging: Path, needed: int | None = None) -> str:
    need = f" (about {needed / 2**20:.0f} MiB needed)" if needed else ""
    return (
        f"disk full while writing {where}{need}; {cache} is unchanged and finished batches are kept in {staging}; "
        f"free space and rerun the same command to resume"
    )


def _nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False
