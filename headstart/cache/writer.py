"""Resumable, atomic writing of feature sets into a cache file: rank 0's side of an extraction.

`CacheWriter` holds the writer lock and strings the three parts together: the planner (`plan.py`) decides what
to do from the file's header, the stager (`stager.py`) writes batches into the set files, journaled in
`<cache>.parts/`, while extraction runs, and the publisher (`publish.py`) builds a new small cache file linking
to them and renames it over the cache.
The other ranks of a torchrun job use only `plan_for` and `Stager.joined`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from headstart.cache.header import read_header
from headstart.cache.lock import WriterLock
from headstart.cache.plan import Action, Plan, plan
from headstart.cache.publish import publish
from headstart.cache.request import CacheRequest, FeatureSetSpec, SamplesTable
from headstart.cache.schema import lock_path, staging_dir
from headstart.cache.stager import Stager
from headstart.cache.undo import journal_path, roll_back
from headstart.cache.staging import StagingArea
from headstart.data.imagemeta import ImageMeta
from headstart.errors import CacheError

logger = logging.getLogger(__name__)

def plan_for(request: CacheRequest) -> Plan:
    """Read what is at the cache path and what is staged next to it, and plan; raises the plan's refusal.

    Read-only, so every rank of a torchrun job may call it; only the writer acts on the plan.
    """
    if journal_path(request.path).exists():  # an in-place add died: roll the file back first (under the lock)
        with WriterLock(lock_path(request.path), target=request.path):
            roll_back(request.path)
    table = request.table
    staged = StagingArea(staging_dir(request.path), n_rows=len(table), manifest_hash=table.manifest_hash).read_state()
    decided = plan(read_header(request.path), request, staged)
    error = decided.error()
    if error is not None:
        raise error
    return decided


class CacheWriter:
    """Adds feature sets to a cache file, resumably and atomically. Use as a context manager (holds the lock).

    Construction validates the request and plans without touching anything on disk; `todo` then names the sets
    to extract. Entering takes the lock, plans again (another writer may have finished meanwhile) and prepares the
    staging area. `rank` tags the part files under torchrun (None: a single process).
    """

    def __init__(self, path: str | Path, table: SamplesTable, specs: list[FeatureSetSpec], *,
                 overwrite: bool = False, rank: int | None = None):
        self.request = CacheRequest.of(path, table, specs, overwrite=overwrite)
        self.path = self.request.path
        if not self.path.parent.is_dir():
            raise CacheError(f"folder {self.path.parent} does not exist; create it or choose another -o path")
        self.rank = rank
        self.plan = plan_for(self.request)
        self.stager: Stager | None = None  # set while entered
        self._lock = WriterLock(lock_path(self.path), target=self.path)

    @property
    def todo(self) -> list[str]:
        return list(self.plan.todo)

    def __enter__(self) -> "CacheWriter":
        self._lock.acquire()
        try:
            roll_back(self.path)
            for pattern in (f".{self.path.name}.tmp-*", f".{journal_path(self.path).name}.tmp-*"):
                for stale in self.path.parent.glob(pattern):  # left by a writer killed while building it
                    stale.unlink()
            self.plan = plan_for(self.request)
            for note in self.plan.notes:
                logger.warning("%s", note)
            if self.plan.action is Action.RESPLIT:
                logger.info("%s: same images with new splits; keeping %s without re-extracting", self.path,
                            ", ".join(self.plan.keep) or "no feature sets")
            self.stager = Stager.prepared(self.request, self.plan.todo, rank=self.rank,
                                          discard=self.plan.discard_staging)
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.stager is not None:
            self.stager.close()
        self.stager = None
        self._lock.release()

    # rank 0's stager, for single-process callers --------------------------------------------------------------
    def done_mask(self) -> np.ndarray:
        return self._entered().done_mask()

    def write_batch(self, rows: np.ndarray, features: dict[str, np.ndarray], valid: np.ndarray,
                    meta: Sequence[ImageMeta | None] | None = None) -> None:
        self._entered().write_batch(rows, features, valid, meta=meta)

    def rescan(self) -> None:
        self._entered().rescan()

    def read_rows(self, name: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(features, valid) of rows of a set being written, in the order given (rows not written: CacheError)."""
        return self._entered().read_rows(name, rows)

    def finish(self, *, stats: dict[str, dict], skipped: list[str]) -> None:
        """Publish every todo set (and new splits) atomically into the cache file, then delete the staging area."""
        stager = self._entered()
        if self.plan.action is Action.DONE:
            stager.close()
            if stager.staging.folder.exists():
                logger.info("removing finished staging area %s", stager.staging.folder)
                stager.staging.discard()
            return
        if stager.leftover():
            logger.warning("discarding partial extraction of %s staged in %s", ", ".join(stager.leftover()),
                           stager.staging.folder)
        files = stager.merge_ranks()
        publish(self.request, self.plan, files, stats=stats, skipped=skipped, staging=stager.staging.folder,
                meta=stager.assemble_meta())
        stager.staging.discard()

    def _entered(self) -> Stager:
        if self.stager is None:
            raise RuntimeError("use CacheWriter as a context manager: `with CacheWriter(...) as writer:`")
        return self.stager
