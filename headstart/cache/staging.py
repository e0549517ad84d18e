"""The staging area of a resumable extraction: `<cache>.parts/` next to the cache file, and the set files.

`state.json` records what is being extracted (manifest hash, N, and per set its fingerprint, dim, dtype and `file`,
its set file's name in the folder). Rows go straight into that HDF5 file's chunked `/features` (N, D) and `/valid`
(N,) datasets, the layout of the cache itself, so nothing is assembled in memory and publishing copies chunks.
Under torchrun rank r > 0 writes `<file>-r<r>.h5` instead, which rank 0 merges when publishing.

After each batch the rank's set files are flushed and fsync-ed, then one record is appended (and fsync-ed) to the
rank's journal `rows[-r<rank>].log`: the batch's rows, the set files (by their random token) they went into, and
the rows' image metadata, under a CRC. The journal is the row bitmap a rerun resumes from, one batch at a time: a
kill -9 loses at most the batches in flight, a torn last record is cut off, a record naming a set file that was
since recreated (another token) counts for nothing, and a set file that fails its checksums is started again.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headstart import io as durable
from headstart.cache.schema import STAGING_FORMAT, STAGING_STATE, STAGING_VERSION
from headstart.data.imagemeta import meta_columns, record_columns
from headstart.errors import CacheError

logger = logging.getLogger(__name__)

JOURNAL_RE = re.compile(r"^rows(?:-r(\d+))?\.log$")
RECORD = struct.Struct("<4sIII")  # magic, header bytes, payload bytes, crc32 of header + payload
MAGIC = b"HSJ1"


@dataclass
class Batch:
    """One journal record: rows written into the set files whose tokens `sets` names."""

    rank: int
    rows: np.ndarray  # int64 row indices
    sets: dict[str, str]  # set name -> token of the set file the rows went into
    meta: np.ndarray | None  # the rows' image metadata records (`imagemeta.meta_records`), or None


def staged_conflict(state: dict | None, wanted: dict[str, dict], *, n_rows: int,
                    manifest_hash: str) -> tuple[str | None, dict] | None:
    """Why the batches staged under `state` cannot be resumed for the `wanted` sets (name -> staged entry): (the
    set staged with another fingerprint, dim or dtype, its entry), or (None, state) for another sample table.

    The one staging compatibility rule: the planner refuses (or, with --overwrite, discards) on a conflict, and a
    joining rank requires none. Sets staged but not wanted, or wanted but not yet staged, are no conflict.
    """
    if state is None:
        return None
    if (state.get("version"), state.get("manifest_hash"), state.get("n_rows")) != (STAGING_VERSION, manifest_hash,
                                                                                   n_rows):
        return None, state
    for name, entry in wanted.items():
        staged = state["sets"].get(name)
        if staged is not None and staged_key(staged) != staged_key(entry):
            return name, staged
    return None


def staged_key(entry: dict) -> tuple:
    return entry.get("fingerprint"), entry.get("dim"), entry.get("dtype")


class StagingArea:
    """Reads and writes the staging folder of one cache path. Only the lock holder creates or deletes it."""

    def __init__(self, folder: str | Path, *, n_rows: int, manifest_hash: str, rank: int | None = None):
        self.folder = Path(folder)
        self.n_rows = n_rows
        self.manifest_hash = manifest_hash
        self.rank = rank  # None: a single process

    @property
    def journal(self) -> Path:
        return self.folder / ("rows.log" if not self.rank else f"rows-r{self.rank}.log")

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
        return state is not None and staged_conflict(state, {}, n_rows=self.n_rows,
                                                     manifest_hash=self.manifest_hash) is None

    def write_state(self, sets: dict[str, dict]) -> None:
        self.folder.mkdir(exist_ok=True)
        state = {"format": STAGING_FORMAT, "version": STAGING_VERSION, "manifest_hash": self.manifest_hash,
                 "n_rows": self.n_rows, "sets": sets}  # name -> {"fingerprint", "dim", "dtype", "file"}
        durable.write_bytes_atomic(self.folder / STAGING_STATE, json.dumps(state, indent=1).encode("utf-8"))

    # the journals ----------------------------------------------------------------------------------------
    def append(self, rows: np.ndarray, sets: dict[str, str], meta: np.ndarray | None) -> None:
        """Append one batch's record to this rank's journal, durably (after its rows are in the set files)."""
        head = json.dumps(sets, sort_keys=True).encode("utf-8")
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(rows, dtype=np.int64), allow_pickle=False)
        if meta is not None:
            np.save(buffer, meta, allow_pickle=False)
        body = head + buffer.getvalue()
        with open(self.journal, "ab") as f:
            f.write(RECORD.pack(MAGIC, len(head), len(body) - len(head), zlib.crc32(body)) + body)
            f.flush()
            os.fsync(f.fileno())

    def batches(self, *, repair: bool = False) -> list[Batch]:
        """Every intact record of every rank's journal; `repair` cuts torn tails so appends follow good records."""
        out: list[Batch] = []
        if not self.folder.is_dir():
            return out
        for file in sorted(self.folder.iterdir()):
            match = JOURNAL_RE.match(file.name)
            if match:
                end = _read_journal(file, int(match.group(1) or 0), out, self.n_rows)
                if repair and end < file.stat().st_size:
                    logger.warning("cutting a torn record off %s; its rows will be extracted again", file)
                    os.truncate(file, end)
        return out

    def info(self) -> dict | None:
        """What an in-progress (or interrupted) extraction has staged, for `cache info`; None when nothing is."""
        if not self.folder.is_dir():
            return None
        state = self.read_state()
        same = self.compatible(state)
        seen = np.zeros(self.n_rows, dtype=bool)
        for batch in self.batches() if same else ():
            seen[batch.rows] = True
        return {"folder": str(self.folder), "sets": sorted(state["sets"]) if state else [], "same_samples": same,
                "rows_staged": int(seen.sum()) if same else None}

    def meta_columns(self) -> dict[str, np.ndarray] | None:
        """(N,) metadata columns from the journals (later records win); rows no record describes hold the missing
        values. None when no record carries metadata."""
        columns = None
        for batch in self.batches():
            if batch.meta is None or len(batch.meta) != len(batch.rows):
                continue
            try:
                got = record_columns(batch.meta)
            except ValueError:
                continue
            columns = columns or meta_columns([None] * self.n_rows)
            for key, values in got.items():
                columns[key][batch.rows] = values
        return columns

    def discard(self) -> None:
        """Remove the staging folder (after publishing, or when --overwrite drops a mismatched extraction)."""
        if self.folder.exists():
            shutil.rmtree(self.folder)
            durable.fsync_dir(self.folder.parent)


def _read_journal(file: Path, rank: int, out: list[Batch], n_rows: int) -> int:
    """Append the intact records of `file` to `out`; return the offset where they end."""
    data = file.read_bytes()
    at = 0
    while at + RECORD.size <= len(data):
        magic, n_head, n_body, crc = RECORD.unpack_from(data, at)
        body = data[at + RECORD.size: at + RECORD.size + n_head + n_body]
        if magic != MAGIC or len(body) != n_head + n_body or zlib.crc32(body) != crc:
            break
        try:
            sets = json.loads(body[:n_head].decode("utf-8"))
            stream = io.BytesIO(body[n_head:])
            rows = np.load(stream, allow_pickle=False)
            meta = np.load(stream, allow_pickle=False) if stream.tell() < n_body else None
            if rows.ndim != 1 or (len(rows) and (rows.min() < 0 or rows.max() >= n_rows)):
                raise ValueError("row indices out of range")
        except (ValueError, UnicodeDecodeError):
            break
        out.append(Batch(rank, rows.astype(np.int64), sets, meta))
        at += RECORD.size + n_head + n_body
    return at


@contextmanager
def disk_errors(cache: Path, where: Path, staging: Path) -> Iterator[None]:
    """Turn out-of-space and other I/O failures while writing `where` into one-line CacheErrors.

    Journaled batches and the published `cache` are never touched by a failure here, so the message says to rerun.
    """
    try:
        yield
    except OSError as exc:
        if durable.is_disk_full(exc) or _nearly_full(cache.parent):
            raise CacheError(f"disk full while writing {where}; {cache} is unchanged and finished batches are kept in "
                             f"{staging}; free space and rerun the same command to resume") from None
        raise CacheError(f"could not write {where} ({exc}); {cache} is unchanged; fix the problem and rerun the same "
                         f"command to resume") from None


def _nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False
