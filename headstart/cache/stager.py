"""The stager: what every rank does with the staging area of one request while an extraction runs.

Rank 0 (the writer, holding the lock) gets one from `Stager.prepared`, the other ranks of a torchrun job from
`Stager.joined`. A stager reports the rows already written (resume), and validates each batch and writes it into
the set files in place: memory is one batch, never (N, D). `WriteBehind` takes the writes off the loop's path.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import h5py
import numpy as np

from headstart.cache.plan import CacheRequest
from headstart.cache.schema import LIBVER, SET_FEATURES, SET_VALID, chunk_rows, set_file_name, staging_dir
from headstart.cache.staging import StagingArea, disk_errors, staged_conflict, staged_key
from headstart.data.imagemeta import ImageMeta, meta_records
from headstart.errors import CacheError, CacheMismatchError

logger = logging.getLogger(__name__)
CHUNK_CACHE = 8 << 20  # a batch's partial chunks stay cached between batches: no read-back before each write
TOKEN = "token"  # root attribute of a set file: random, named by the journal records of rows written into it


class Stager:
    """Writes the batches of the `todo` sets of one request; `rank` names a torchrun rank's journal and set files
    (None or 0: a single process, or rank 0)."""

    def __init__(self, request: CacheRequest, todo: Sequence[str], *, rank: int | None = None):
        self.request = request
        self.todo = list(todo)
        self.rank = rank or 0
        self.wanted = {name: request.specs[name].staged_entry() for name in self.todo}
        n = len(request.table)
        self.staging = StagingArea(staging_dir(request.path), n_rows=n, manifest_hash=request.table.manifest_hash,
                                   rank=rank)
        self.sets: dict[str, dict] = dict(self.wanted)  # every set state.json describes
        self.sources: dict[str, dict[int, np.ndarray]] = {}  # set -> rank -> rows written (verified) in its file
        self._files: dict[str, h5py.File] = {}  # this rank's open set files

    @classmethod
    def prepared(cls, request: CacheRequest, todo: Sequence[str], *, rank: int | None = None,
                 discard: bool = False) -> "Stager":
        """Rank 0, holding the lock: drop a stale (or, with `discard`, a conflicting) area, record this request and
        find the rows a previous run wrote, starting again a set file whose checksums fail."""
        stager = cls(request, todo, rank=rank)
        staging = stager.staging
        state = staging.read_state()
        if staging.folder.exists() and (state is None or discard or not staging.compatible(state)):
            staging.discard()
            state = None
        if not stager.todo:
            return stager
        old = state["sets"] if state else {}  # state is None or made for this table: a set is kept if it matches
        for name, entry in stager.wanted.items():
            same = staged_key(old.get(name, {})) == staged_key(entry) and "file" in old[name]
            entry["file"] = old[name]["file"] if same else set_file_name(name, entry["fingerprint"])
        stager.sets = {**old, **stager.wanted}
        with stager._disk_errors(staging.folder):
            staging.write_state(stager.sets)
            stager._scan(repair=True)
        done = int(stager.done_mask().sum())
        if done:
            logger.info("resuming: %d of %d images already extracted in %s", done, len(request.table), staging.folder)
        return stager

    @classmethod
    def joined(cls, request: CacheRequest, todo: Sequence[str], *, rank: int | None = None) -> "Stager":
        """Another rank, after rank 0 prepared the area: it must describe exactly this request. Cleans nothing."""
        stager = cls(request, todo, rank=rank)
        staging, table = stager.staging, request.table
        state = staging.read_state()
        if stager.todo and (
            state is None or any(name not in state["sets"] for name in stager.todo)
            or staged_conflict(state, stager.wanted, n_rows=len(table), manifest_hash=table.manifest_hash) is not None
        ):
            raise CacheMismatchError(f"{staging.folder} was not prepared for this request by the writer (rank 0); "
                                     f"start every rank with the same command")
        stager.sets = state["sets"] if state else {}
        with stager._disk_errors(staging.folder):
            stager._open_own(tokens={}, keep=True)
        return stager

    # ------------------------------------------------------------------------------------------------------
    def set_path(self, name: str, rank: int | None = None) -> Path:
        """The set file of `name` that `rank` writes in the staging area; rank 0's is the one published."""
        file = self.sets[name]["file"]
        return self.staging.folder / (f"{file[:-3]}-r{rank}.h5" if rank else file)

    def _scan(self, *, repair: bool) -> None:
        """Rows written per set and rank: journaled into the file that is there now, and checksum-clean."""
        self.close()
        batches = self.staging.batches(repair=repair)
        n = len(self.request.table)
        tokens: dict[str, str] = {}
        self.sources = {}
        for name in self.todo:
            spec = self.request.specs[name]
            ranks = {b.rank for b in batches if name in b.sets} | {self.rank}
            for rank in sorted(ranks):
                path = self.set_path(name, rank)
                token, rows = _verified(path, (n, spec.dim), spec.dtype, batches)
                if token is None and repair:
                    path.unlink(missing_ok=True)  # damaged, or not the file the journal names: start it again
                if rank == self.rank and token is not None:
                    tokens[name] = token
                self.sources.setdefault(name, {})[rank] = rows
        if self.staging.folder.is_dir() and self.todo:
            self._open_own(tokens)

    def _open_own(self, tokens: dict[str, str], *, keep: bool = False) -> None:
        """Open (or create) this rank's set file of every todo set; a file without a verified token is made anew
        unless `keep` (a joining rank: rank 0 verified the files and deleted the damaged ones)."""
        n = len(self.request.table)
        for name in self.todo:
            spec = self.request.specs[name]
            path = self.set_path(name, self.rank)
            if name in tokens or (keep and path.exists()):
                self._files[name] = h5py.File(path, "a", libver=LIBVER, locking=False, rdcc_nbytes=CHUNK_CACHE)
                continue
            f = h5py.File(path, "w", libver=LIBVER, locking=False, rdcc_nbytes=CHUNK_CACHE)
            f.attrs[TOKEN] = secrets.token_hex(8)
            f.create_dataset(SET_FEATURES, shape=(n, spec.dim), dtype=spec.dtype, fletcher32=True,
                             chunks=(chunk_rows(spec.dim, np.dtype(spec.dtype).itemsize, n), spec.dim))
            f.create_dataset(SET_VALID, shape=(n,), dtype=bool, chunks=(min(n, 1 << 20),), fletcher32=True)
            f.flush()
            self._files[name] = f

    def rescan(self) -> None:
        """Re-read the journals, so `done_mask` sees rows the other ranks wrote."""
        self._scan(repair=False)

    def done_mask(self) -> np.ndarray:
        """(N,) bool: rows already written for every set still to do; extraction skips them."""
        mask = np.ones(len(self.request.table), dtype=bool)
        for name in self.todo:
            mask &= self._written(name)
        return mask

    def _written(self, name: str) -> np.ndarray:
        """(N,) bool: rows of set `name` written by any rank."""
        return np.any([np.zeros(len(self.request.table), dtype=bool), *self.sources.get(name, {}).values()], axis=0)

    def leftover(self) -> list[str]:
        """Sets a previous run staged that this request does not extract; publishing drops them."""
        return [name for name in self.sets if name not in self.todo]

    def write_batch(self, rows: np.ndarray, features: dict[str, np.ndarray], valid: np.ndarray,
                    meta: Sequence[ImageMeta | None] | None = None) -> None:
        """Write one batch into the set files, then journal it. Rows of skipped images (valid False) are zeros.

        `valid` is one mask for every set, or one per set name where sets differ (the view sets of
        `extract.views` are valid only for the rows that have views; a set missing from the dict uses
        `valid[""]`). `meta` is each row's image metadata (None for a skipped image), journaled with the rows so
        that a resumed extraction publishes every row's metadata; None when the caller records none."""
        table = self.request.table
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        n = len(rows)
        per_set = valid if isinstance(valid, Mapping) else {"": valid}
        masks = {name: np.asarray(per_set.get(name, per_set[""]), dtype=bool).reshape(-1) for name in self.todo}
        for mask in masks.values():
            if mask.shape != (n,):
                raise ValueError(f"valid has {mask.shape[0]} entries for {n} rows")
        if n and (rows.min() < 0 or rows.max() >= len(table) or len(np.unique(rows)) != n):
            raise ValueError("rows must be distinct indices into the samples table")
        if meta is not None and len(meta) != n:
            raise ValueError(f"meta has {len(meta)} entries for {n} rows")
        if set(features) != set(self.todo):
            raise ValueError(f"features given for {sorted(features)}, expected exactly {sorted(self.todo)}")
        staged = {}
        for name in self.todo:
            spec = self.request.specs[name]
            arr = np.asarray(features[name])
            if arr.shape != (n, spec.dim):
                raise ValueError(f"features[{name!r}] has shape {arr.shape}, expected ({n}, {spec.dim})")
            with np.errstate(over="ignore", invalid="ignore"):  # overflow to Inf is reported just below
                arr = arr.astype(spec.dtype, copy=True)
            valid = masks[name]
            arr[~valid] = 0
            bad = int((~np.isfinite(arr[valid])).sum())
            if bad:
                raise CacheError(f"backbone '{spec.backbone}' gave {bad} NaN/Inf feature values as {spec.dtype} in a "
                                 f"batch starting at image {table.ids[rows[0]]}; try --precision fp32 or "
                                 f"--feature-dtype float32")
            staged[name] = arr
        order = np.argsort(rows, kind="stable")
        with self._disk_errors(self.staging.folder):
            for name, arr in staged.items():
                f = self._files[name]
                f[SET_FEATURES][rows[order]] = arr[order]  # h5py writes a selection in increasing row order
                f[SET_VALID][rows[order]] = masks[name][order]
                f.flush()
                os.fsync(f.id.get_vfd_handle())
            self.staging.append(rows, {k: str(f.attrs[TOKEN]) for k, f in self._files.items()},
                                None if meta is None else meta_records(meta))
        for name in self.todo:
            self.sources.setdefault(name, {}).setdefault(self.rank, np.zeros(len(table), dtype=bool))[rows] = True

    def read_rows(self, name: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(features (n, D), valid (n,)) of written `rows` of a todo set, in the order given, from whichever rank's
        file holds them; raises CacheError for a row not written yet."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        spec = self.request.specs[name]
        x, valid = np.zeros((len(rows), spec.dim), dtype=spec.dtype), np.zeros(len(rows), dtype=bool)
        found = np.zeros(len(rows), dtype=bool)
        for rank, have in self.sources.get(name, {}).items():
            take = np.flatnonzero(have[rows] & ~found)
            if not len(take):
                continue
            with self._rank_file(name, rank) as f:
                x[take], valid[take] = _read_rows(f[SET_FEATURES], rows[take]), _read_rows(f[SET_VALID], rows[take])
            found[take] = True
        if not found.all():
            raise CacheError(f"{int((~found).sum())} rows of feature set '{name}' were never written to "
                             f"{self.staging.folder}; rerun the same command to resume")
        return x, valid

    def merge_ranks(self) -> dict[str, Path]:
        """Rank 0, before publishing: copy the rows other ranks wrote into rank 0's set files, check that every row
        of every todo set is written, close the files; returns each set's file. Memory: one chunk."""
        n, path = len(self.request.table), self.request.path
        for name in self.todo:
            own = self._files[name]
            for rank, rows in self.sources.get(name, {}).items():
                if rank == self.rank or not rows.any():
                    continue
                with self._rank_file(name, rank) as other:
                    _copy_rows(other, own, rows)
            own.flush()
            missing = int((~self._written(name)).sum())
            if missing:
                raise CacheError(f"cannot finish {path}: {missing} of {n} images of feature set '{name}' were never "
                                 f"extracted; rerun the same command to resume")
        self.close()
        return {name: self.set_path(name, self.rank) for name in self.todo}

    def _rank_file(self, name: str, rank: int):
        """This rank's open set file of `name` (left open), or another rank's, opened read-only for a `with`."""
        if rank == self.rank:
            return nullcontext(self._files[name])
        return h5py.File(self.set_path(name, rank), "r", locking=False)

    def close(self) -> None:
        for f in self._files.values():
            if f.id.valid:
                f.close()
        self._files = {}

    def _disk_errors(self, where):
        return disk_errors(self.request.path, where, self.staging.folder)


def _verified(path: Path, shape: tuple[int, int], dtype: str, batches: list) -> tuple[str | None, np.ndarray]:
    """(token, rows) of a set file: the rows the journal records naming its (random, so unique) token hold, when
    every chunk holding them passes its checksum; (None, no rows) when the file is missing, damaged or misshapen."""
    rows = np.zeros(shape[0], dtype=bool)
    try:
        with h5py.File(path, "r", locking=False) as f:
            token, ds, valid = str(f.attrs[TOKEN]), f[SET_FEATURES], f[SET_VALID]
            if ds.shape != shape or ds.dtype != np.dtype(dtype) or valid.shape != shape[:1]:
                return None, rows
            for batch in batches:
                if token in batch.sets.values():
                    rows[batch.rows] = True
            step = ds.chunks[0]
            for start in np.unique(np.flatnonzero(rows) // step) * step:
                ds[start:start + step], valid[start:start + step]  # noqa: B018 - read to check the fletcher32 sums
    except Exception as exc:  # noqa: BLE001 - any damage (HDF5, checksum, attributes) means "start it again"
        if path.exists():
            logger.warning("set file %s is damaged (%s); its rows will be extracted again", path, exc)
        return None, np.zeros(shape[0], dtype=bool)
    return token, rows


def _read_rows(ds, rows: np.ndarray) -> np.ndarray:
    """Rows of a dataset in the order given (repeats allowed); h5py reads a sorted selection of distinct rows."""
    distinct, where = np.unique(rows, return_inverse=True)
    return ds[distinct][where]


def _copy_rows(src, dst, rows: np.ndarray) -> None:
    """Copy the `rows` (bool mask) of both datasets of one set file into another, a chunk of rows at a time."""
    rows = np.flatnonzero(rows)
    for take in np.split(rows, np.flatnonzero(np.diff(rows // dst[SET_FEATURES].chunks[0])) + 1):
        for key in (SET_FEATURES, SET_VALID):
            dst[key][take] = src[key][take]


class WriteBehind:
    """Writes each batch on a background thread while the caller computes the next one (one batch in flight).

    The queue between the loop and the disk is one batch long, so memory is bounded whatever the timing. Each
    batch is still written, fsync-ed and journaled before the next one starts, so a kill -9 or a power loss loses
    at most the batch in flight. A failure (disk full) is raised by the next `write_batch` or by `wait`.
    """

    def __init__(self, stager: Stager):
        self.stager = stager
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="headstart-stage")
        self._pending: Future | None = None

    def write_batch(self, rows: np.ndarray, features: dict[str, np.ndarray], valid: np.ndarray,
                    meta: Sequence[ImageMeta | None] | None = None) -> None:
        self.wait()
        self._pending = self._pool.submit(self.stager.write_batch, rows, features, valid, meta=meta)

    def wait(self) -> None:
        """Block until the batch in flight is written; raise its error, if any."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> "WriteBehind":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.wait()
            elif self._pending is not None:  # keep the finished batch for resume; the first error is the one raised
                self._pending.exception()
        finally:
            self._pool.shutdown(wait=True)
