"""Resumable, atomic writing of feature sets into a cache file: rank 0's side of an extraction.

`CacheWriter` holds the writer lock and strings the three parts together: the planner (`plan.py`) decides what
to do from the file's header, the stager (`stager.py`) writes batches into the set files, journaled in
`<cache>.parts/`, while extraction runs, and the publisher (`publish.py`) copies them into the cache file.
The other ranks of a torchrun job use only `plan_for` and `Stager.joined`. `publish_splits` gives a cache's rows new
splits through the same writer: splits are metadata, so every complete set is kept, re-stamped (`audit --fix`).

One writer per cache: an exclusive flock on `<cache>.lock`, which says who holds it. The kernel drops a flock when
its holder dies (even on kill -9), so a stale lock file never blocks a rerun. The file is unlinked on release;
acquirers re-check the inode so a lock on an unlinked file never counts.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from headstart.cache.fingerprint import set_fingerprint, stored_version
from headstart.cache.header import FileKind, read_header
from headstart.cache.plan import Action, CacheRequest, FeatureSetSpec, Plan, SamplesTable, plan
from headstart.cache.publish import publish, roll_back
from headstart.cache.schema import ROOT_PLAIN_ATTRS, journal_path, lock_path, staging_dir
from headstart.cache.stager import Stager
from headstart.cache.staging import StagingArea
from headstart.data.dataset import manifest_hash
from headstart.data.imagemeta import ImageMeta
from headstart.data.types import SPLITS, Sample
from headstart.errors import CacheError, ConfigError

logger = logging.getLogger(__name__)


class WriterLock:
    """Context manager holding the exclusive write lock of the cache at `target`."""

    def __init__(self, target: str | Path):
        self.target, self.lock_file = Path(target), lock_path(target)
        self._fd: int | None = None

    def acquire(self) -> None:
        while True:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            self._flock(fd)
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_file).st_ino
            except FileNotFoundError:
                same = False  # the previous holder unlinked it between our open and flock
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
                                 "since": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}).encode())
        self._fd = fd

    def check_free(self) -> None:
        """Raise the holder's one-line CacheError now when another writer holds the lock, so a second extraction is
        refused before it spends time on models and engines. A probe (the lock taken and dropped at once, never
        created); `acquire` still decides."""
        try:
            fd = os.open(self.lock_file, os.O_RDWR)
        except FileNotFoundError:
            return
        self._flock(fd)
        os.close(fd)  # closing drops the probe's lock

    def _flock(self, fd: int) -> None:
        """Take the flock on `fd`; when another process holds it, close `fd` and raise the one-line refusal naming
        the holder from what it wrote in the lock file (JSON only, never eval)."""
        try:
            return fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        try:
            info = json.loads(os.pread(fd, 65536, 0).decode("utf-8"))
            holder = (f"pid {info['pid']} on host {info['host']} since {info['since']}"
                      + (f" ({info['command']})" if info.get("command") else ""))
        except (OSError, ValueError, KeyError, TypeError):
            holder = "another process (its lock file has no holder details yet)"
        finally:
            os.close(fd)
        raise CacheError(f"{self.target} is being written by {holder}; wait for it to finish")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.lock_file.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> "WriterLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def plan_for(request: CacheRequest) -> Plan:
    """Read what is at the cache path and what is staged next to it, and plan; raises the plan's refusal.
    Read-only (but for rolling back an interrupted in-place add), so every rank of a torchrun job may call it."""
    if journal_path(request.path).exists():  # an in-place add died: roll the file back first (under the lock)
        with WriterLock(request.path):
            roll_back(request.path)
    table = request.table
    staged = StagingArea(staging_dir(request.path), n_rows=len(table), manifest_hash=table.manifest_hash).read_state()
    decided = plan(read_header(request.path), request, staged)
    error = decided.error()
    if error is not None:
        raise error
    return decided


class CacheWriter:
    """Adds feature sets to a cache file, resumably and atomically; a context manager holding the lock.

    Construction validates and plans (`todo`: the sets to extract); entering takes the lock, plans again (another
    writer may have finished meanwhile) and prepares the staging area. `rank`: a torchrun rank (None: one process).
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
        self._lock = WriterLock(self.path)

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
                meta=stager.staging.meta_columns())
        stager.staging.discard()

    def _entered(self) -> Stager:
        if self.stager is None:
            raise RuntimeError("use CacheWriter as a context manager: `with CacheWriter(...) as writer:`")
        return self.stager


def publish_splits(path: str | Path, splits: Sequence[str], *, note: dict | None = None) -> bool:
    """Give the rows of the cache at `path` the new `splits` (one per row, in row order); True when the file changed.

    `note` is recorded as the root attribute `resplit` (what moved and why). Refused, with one line, for a file that
    is not a readable cache, a cache with an unfinished extraction beside it, or a cache without a complete set.
    """
    path = Path(path)
    header = read_header(path)
    if header.kind is not FileKind.CACHE:
        raise CacheError(header.message)
    if len(splits) != len(header.ids) or not set(splits) <= set(SPLITS):
        raise ConfigError(f"{len(splits)} new splits for {len(header.ids)} rows of {path}; expected one of "
                          f"{'/'.join(SPLITS)} per row")
    if staging_dir(path).exists():
        raise CacheError(f"{staging_dir(path)} holds an unfinished extraction; rerun that `headstart extract` command "
                         f"to finish it before changing the splits of {path}")
    codes = header.label_matrix if header.task == "multilabel" else None
    # a multi-label row hashes as extraction hashes it (data.types.Sample: label 0 and its raw codes)
    raw = [()] * len(header.ids) if codes is None else [tuple(row) for row in codes.tolist()]
    samples = [Sample(id=str(i), label=int(y) if codes is None else 0, split=str(s), group=str(g), labels=r)
               for i, y, s, g, r in zip(header.ids, header.labels, splits, header.groups, raw)]
    attrs = {k: v for k, v in header.root_attrs.items() if k not in ROOT_PLAIN_ATTRS and k != "classes"}
    if note is not None:
        attrs["resplit"] = note
    table = SamplesTable(ids=[s.id for s in samples], labels=[int(y) for y in header.labels],
                         splits=[s.split for s in samples], groups=[s.group for s in samples],
                         classes=list(header.classes), manifest_hash=manifest_hash(samples, list(header.classes)),
                         attrs=attrs, task=header.task, label_matrix=codes)
    specs = [_kept_spec(path, meta, table.manifest_hash) for meta in header.feature_sets.values() if meta["complete"]]
    if not specs:
        raise CacheError(f"{path} has no complete feature set to keep; extract one first (`headstart extract`)")
    with CacheWriter(path, table, specs) as writer:
        if writer.plan.action is not Action.RESPLIT:  # the same splits: nothing to publish
            return False
        writer.finish(stats={}, skipped=[])
    logger.info("published new splits in %s; kept %s without re-extracting", path, ", ".join(s.name for s in specs))
    return True


def _kept_spec(path: Path, meta: dict, manifest: str) -> FeatureSetSpec:
    """The request that keeps an existing set as it is: its own identity, fingerprinted under the new manifest."""
    try:
        fingerprint = set_fingerprint(meta, manifest)
    except (KeyError, TypeError, ValueError):
        raise CacheError(f"feature set '{meta['name']}' in {path} lacks the attributes its fingerprint is computed "
                         f"from; run `headstart cache verify {path}`") from None
    return FeatureSetSpec(name=meta["name"], backbone=meta["backbone"], weights_tag=meta["weights"],
                          weights_sha256=meta["weights_sha256"], preprocessing=meta["preprocessing"], dim=meta["dim"],
                          fingerprint=fingerprint, dtype=meta["dtype"], parts=meta.get("fingerprint_parts") or {},
                          version=stored_version(meta))
