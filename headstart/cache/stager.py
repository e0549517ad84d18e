"""The stager: what every rank does with the staging area of one request while an extraction runs.

Rank 0 (the writer, holding the lock) gets a stager from `Stager.prepared`, which cleans and records the area and
finds the batches a previous run left. The other ranks of a torchrun job get theirs from `Stager.joined` once
rank 0 is done, and only add parts. Either way a stager reports the rows already staged (resume), validates and
stages batches durably, and assembles the staged parts into full arrays for the publisher. `WriteBehind` stages
them off the extraction loop's critical path.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from headstart.cache.request import CacheRequest
from headstart.cache.schema import staging_dir
from headstart.cache.staging import StagedPart, StagingArea, disk_errors, staged_conflict
from headstart.data.imagemeta import ImageMeta, meta_columns, meta_records, record_columns
from headstart.errors import CacheError, CacheMismatchError

logger = logging.getLogger(__name__)


def _damaged(part: StagedPart, exc: Exception) -> CacheError:
    """A part that passed the scan but cannot be read at publication: drop it, so a rerun extracts its rows again."""
    part.path.unlink(missing_ok=True)
    return CacheError(f"staged batch {part.path} was damaged after it was written ({exc}); rerun the same command "
                      f"to extract its rows again")


class Stager:
    """Stages the batches of `todo` sets of one request into `<cache>.parts/`. Build it with `prepared` or `joined`.

    `rank` tags the part files so that ranks sharing the folder never collide (None: a single process).
    """

    def __init__(self, request: CacheRequest, todo: Sequence[str], *, rank: int | None = None):
        self.request = request
        self.todo = list(todo)
        self.wanted = {name: request.specs[name].staged_entry() for name in self.todo}
        table = request.table
        self.staging = StagingArea(staging_dir(request.path), n_rows=len(table), manifest_hash=table.manifest_hash,
                                   rank=rank)
        self.sets: dict[str, dict] = dict(self.wanted)  # every set state.json describes, to validate parts against

    @classmethod
    def prepared(cls, request: CacheRequest, todo: Sequence[str], *, rank: int | None = None,
                 discard: bool = False) -> "Stager":
        """Rank 0, holding the lock: drop a stale (or, with `discard`, a conflicting) area, record this request and
        find the intact parts a previous run staged, deleting damaged ones so their rows are extracted again."""
        stager = cls(request, todo, rank=rank)
        staging = stager.staging
        state = staging.read_state()
        if staging.folder.exists() and (state is None or discard):
            staging.discard()
            state = None
        if not stager.todo:
            return stager
        stager.sets = {**(state["sets"] if state else {}), **stager.wanted}
        with stager._disk_errors(staging.folder):
            staging.write_state(stager.sets)
        staging.scan(stager.sets, delete_damaged=True)
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
            state is None
            or staged_conflict(state, stager.wanted, n_rows=len(table), manifest_hash=table.manifest_hash) is not None
            or any(name not in state["sets"] for name in stager.todo)
        ):
            raise CacheMismatchError(
                f"{staging.folder} was not prepared for this request by the writer (rank 0); start every rank "
                f"with the same command"
            )
        stager.sets = state["sets"] if state else {}
        staging.skip_existing_numbers()  # rank 0 already scanned (and cleaned) the parts
        return stager

    # ------------------------------------------------------------------------------------------------------
    def rescan(self) -> None:
        """Re-read the staging area, so `done_mask` and `assemble` see parts other ranks staged."""
        self.staging.scan(self.sets, delete_damaged=False)

    def done_mask(self) -> np.ndarray:
        """(N,) bool: rows already staged for every set still to do; extraction skips them."""
        return self.staging.done_mask(self.todo)

    def leftover(self) -> list[str]:
        """Sets a previous run staged that this request does not extract; publishing drops them."""
        return [name for name in self.sets if name not in self.todo]

    def write_batch(self, rows: np.ndarray, features: dict[str, np.ndarray], valid: np.ndarray,
                    meta: Sequence[ImageMeta | None] | None = None) -> None:
        """Stage one batch durably. Rows of skipped images (valid False) are stored as zeros.

        `meta` is each row's image metadata (None for a skipped image), staged with the features so that a resumed
        extraction publishes every row's metadata; None when the caller records none."""
        table = self.request.table
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        valid = np.asarray(valid, dtype=bool).reshape(-1)
        n = len(rows)
        if valid.shape != (n,):
            raise ValueError(f"valid has {valid.shape[0]} entries for {n} rows")
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
            arr[~valid] = 0
            bad = int((~np.isfinite(arr[valid])).sum())
            if bad:
                raise CacheError(
                    f"backbone '{spec.backbone}' gave {bad} NaN/Inf feature values as {spec.dtype} in a batch starting "
                    f"at image {table.ids[rows[0]]}; try --precision fp32 or --feature-dtype float32"
                )
            staged[name] = arr
        with self._disk_errors(self.staging.folder):
            self.staging.write_part(rows, valid, staged, None if meta is None else meta_records(meta))

    def assemble(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Full (N, D) features and (N,) valid per todo set from the staged parts, in row order; later parts win."""
        n, path = len(self.request.table), self.request.path
        out = {}
        for name in self.todo:
            spec = self.request.specs[name]
            out[name] = (np.zeros((n, spec.dim), dtype=spec.dtype), np.zeros(n, dtype=bool))
        covered = {name: np.zeros(n, dtype=bool) for name in self.todo}
        for part in sorted(self.staging.parts, key=lambda p: p.order):
            try:
                rows, valid, feats = self.staging.read_part(part, self.sets)
            except Exception as exc:  # noqa: BLE001
                raise _damaged(part, exc) from None
            for name, arr in feats.items():
                if name in out:
                    out[name][0][rows] = arr
                    out[name][1][rows] = valid
                    covered[name][rows] = True
        for name, mask in covered.items():
            if not mask.all():
                raise CacheError(
                    f"cannot finish {path}: {int((~mask).sum())} of {n} images of feature set '{name}' were "
                    f"never extracted; rerun the same command to resume"
                )
        return out

    def assemble_meta(self) -> dict[str, np.ndarray] | None:
        """(N,) metadata columns from the staged parts, in row order (later parts win); rows that no part describes
        hold the missing values. None when no part carries metadata (staged by a headstart that recorded none)."""
        columns, found = meta_columns([None] * len(self.request.table)), False
        for part in sorted(self.staging.parts, key=lambda p: p.order):
            try:
                records = self.staging.read_meta(part)
            except Exception as exc:  # noqa: BLE001
                raise _damaged(part, exc) from None
            if records is not None:
                found = True
                for name, values in record_columns(records).items():
                    columns[name][part.rows] = values
        return columns if found else None

    def _disk_errors(self, where):
        return disk_errors(self.request.path, where, self.staging.folder)


class WriteBehind:
    """Stages each batch on a background thread while the caller computes the next one (one batch in flight).

    Every part is still written, fsync-ed and renamed before the next one starts, so what a kill -9 or a power
    loss leaves is exactly what the synchronous stager leaves, minus at most the batch in flight; only the
    waiting moves off the extraction loop (an fsync is 5-15 ms per batch on this project's machine, and more on
    a busy network disk). A failure (disk full) is raised by the next `write_batch` or by `wait`, before
    anything else is staged.
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
        """Block until the batch in flight is staged; raise its error, if any."""
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
