"""The publisher (rank 0): put the finished set files' data into the cache file, atomically.

A new cache, a re-split, or an add that replaces or drops a set builds the complete new file under a temporary
name and renames it over the cache, so a reader or a crash sees the old complete file or the new one. An add that
keeps every set is done in place, so the kept sets' bytes are neither copied nor rewritten. HDF5 appends the new
chunks at the end of the file and rewrites a little metadata inside it, so first the undo journal
(`<cache>.journal`) saves the file's size and every byte outside the kept sets' chunks (O(N), independent of their
size), fsync-ed; deleting it once the new sets are on disk is the commit. A writer that finds a journal rolls the
file back byte for byte, and readers refuse a cache with one beside it. Each new set is copied a chunk at a time
from its set file in the staging area, where its attributes were stamped first. The image metadata
(/samples/meta) the file already has is kept; a file without it gets the journaled metadata.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from pathlib import Path

import h5py
import numpy as np

import headstart
from headstart import io as durable
from headstart.cache.fingerprint import compute_samples_sha256
from headstart.cache.header import open_readonly
from headstart.cache.plan import Action, CacheRequest, FeatureSetSpec, Plan, SamplesTable
from headstart.cache.schema import (FEATURE_JSON_ATTRS, FEATURE_STAT_KEYS, FEATURES, FORMAT_NAME, FORMAT_VERSION,
                                    LABEL_MATRIX, LIBVER, MAX_SKIPPED_IDS_ATTR, META, META_PATH, SAMPLES, SET_FEATURES,
                                    SET_VALID, VALID, journal_path)
from headstart.cache.staging import disk_errors
from headstart.data.imagemeta import META_FIELDS, NUMPY_DTYPES

logger = logging.getLogger(__name__)

HEAD = struct.Struct("<8sQI")  # magic, header bytes, crc32 of header + saved bytes
MAGIC = b"HSUNDO01"


def write_journal(path: Path) -> None:
    """Save what an in-place add may overwrite in `path`, durably, before it is opened for writing."""
    size = path.stat().st_size
    with h5py.File(path, "r", locking=False) as f:
        kept = sorted((c.byte_offset, c.size) for ds in f[FEATURES].values() if ds.chunks
                      for c in (ds.id.get_chunk_info(i) for i in range(ds.id.get_num_chunks())))
    ranges, at = [], 0
    for offset, length in [*kept, (size, 0)]:  # everything between the feature chunks, and after the last one
        if offset > at:
            ranges.append((at, offset - at))
        at = max(at, offset + length)
    with open(path, "rb") as src:
        saved = b"".join(os.pread(src.fileno(), length, offset) for offset, length in ranges)
    head = json.dumps({"size": size, "ranges": ranges}).encode("utf-8")
    body = head + saved
    durable.write_chunks_atomic(journal_path(path), (HEAD.pack(MAGIC, len(head), zlib.crc32(body)), body))


def roll_back(path: Path) -> bool:
    """Undo an interrupted in-place add to `path` (True when there was one). A torn journal means the file was
    not touched yet (it is written and fsync-ed first), so it is simply removed. Caller holds the writer lock."""
    journal = journal_path(path)
    if not journal.exists():
        return False
    data = journal.read_bytes()
    if len(data) >= HEAD.size:
        magic, n_head, crc = HEAD.unpack_from(data)
        body = data[HEAD.size:]
        if magic == MAGIC and zlib.crc32(body) == crc and len(body) >= n_head:
            header = json.loads(body[:n_head].decode("utf-8"))
            saved, at = memoryview(body)[n_head:], 0
            with open(path, "r+b") as f:
                f.truncate(header["size"])
                for offset, length in header["ranges"]:
                    os.pwrite(f.fileno(), saved[at:at + length], offset)
                    at += length
                f.flush()
                os.fsync(f.fileno())
            logger.warning("rolled %s back to before an interrupted add of feature sets (%s)", path, journal)
    journal.unlink()
    durable.fsync_dir(journal.parent)
    return True


def commit(path: Path) -> None:
    """The in-place add is complete and on disk: drop the journal."""
    durable.fsync_file(path)
    journal_path(path).unlink()
    durable.fsync_dir(path.parent)


def publish(request: CacheRequest, plan: Plan, files: dict[str, Path], *, stats: dict[str, dict],
            skipped: list[str], staging: Path, meta: dict[str, np.ndarray] | None = None) -> None:
    """Stamp the todo sets' files (`files`) complete, then add them to the cache file `plan` describes.

    `meta`: the journaled /samples/meta columns (`StagingArea.meta_columns`), written unless the file already has some."""
    path = request.path
    for name, file in files.items():
        with disk_errors(path, file, staging):
            _stamp_set(file, request.table, request.specs[name], stats.get(name, {}), skipped)
    if plan.action is Action.ADD_SETS and _in_place(path, plan):
        with disk_errors(path, path, staging):
            write_journal(path)
            try:
                dst = h5py.File(path, "r+", libver=LIBVER, locking=False)
            except OSError as exc:  # this process holds it open read-only (HDF5 refuses): rebuild it instead
                journal_path(path).unlink()  # nothing was changed
                logger.debug("cannot add to %s in place (%s); writing a new file", path, exc)
            else:
                try:
                    with dst:
                        _add(dst, plan, files, meta)
                except BaseException:
                    roll_back(path)  # the file as it was; the staged sets are kept for a rerun
                    raise
                commit(path)
                logger.info("added %s to %s in place", ", ".join(plan.todo), path)
                return
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with disk_errors(path, tmp, staging):
            _build(tmp, request, plan, files, meta)
            durable.replace_durably(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("wrote %s (%s)", path, ", ".join(plan.todo) or "new splits, features kept")


def _in_place(path: Path, plan: Plan) -> bool:
    """True when the add only adds: every set in the file is kept and no todo set is there already."""
    with open_readonly(path) as f:
        have = set(f[FEATURES]) | set(f[VALID])
    return not have & set(plan.todo) and set(plan.keep) >= have


def _build(tmp: Path, request: CacheRequest, plan: Plan, files: dict[str, Path],
           meta: dict[str, np.ndarray] | None) -> None:
    with h5py.File(tmp, "w", libver=LIBVER) as dst:
        if plan.action is not Action.ADD_SETS:
            _write_table(dst, request.table)  # a re-split: the new splits; the kept sets are copied unchanged
        if plan.action is not Action.NEW_FILE:
            with open_readonly(request.path) as src:
                if plan.action is Action.ADD_SETS:
                    dst.attrs.update(src.attrs)
                    src.copy(src[SAMPLES], dst, name=SAMPLES)
                    dst.require_group(FEATURES)
                    dst.require_group(VALID)
                elif META_PATH in src:  # a re-split: same images, so the same metadata
                    src.copy(src[META_PATH], dst[SAMPLES], name=META)
                for name in plan.keep:
                    for group in (FEATURES, VALID):
                        src.copy(src[f"{group}/{name}"], dst[group], name=name)
                    if name in plan.restamp:  # a re-split: the set's fingerprint under the new manifest
                        dst[f"{FEATURES}/{name}"].attrs["fingerprint"] = plan.restamp[name]
        _add(dst, plan, files, meta)


def _add(dst: h5py.File, plan: Plan, files: dict[str, Path], meta: dict[str, np.ndarray] | None) -> None:
    """Copy each todo set (data and attributes) from its set file, chunk by chunk, and the metadata if missing."""
    if meta is not None and META_PATH not in dst:
        write_meta(dst, meta)
    for name in plan.todo:
        with h5py.File(files[name], "r", locking=False) as src:
            src.copy(src[SET_VALID], dst[VALID], name=name)  # /features/<name> last: readers list sets by it
            src.copy(src[SET_FEATURES], dst[FEATURES], name=name)
    dst.flush()


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


def _write_table(dst: h5py.File, t: SamplesTable) -> None:
    dst.attrs.update({"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "manifest_hash": t.manifest_hash,
                      "samples_sha256": compute_samples_sha256(ids=t.ids, labels=t.labels, splits=t.splits,
                                                               groups=t.groups, classes=t.classes),
                      "created_by": f"headstart {headstart.__version__}", "classes": json.dumps(list(t.classes))})
    if t.task:
        dst.attrs["task"] = t.task
    for key, value in t.attrs.items():
        dst.attrs[key] = json.dumps(value, sort_keys=True, default=str)
    samples = dst.create_group(SAMPLES)
    text = h5py.string_dtype("utf-8")
    n = len(t)
    for key, values, dtype in (("id", t.ids, text), ("label", t.labels, np.int64), ("split", t.splits, text),
                               ("group", t.groups, text)):
        data = np.asarray(values, dtype=object if dtype is text else dtype)
        # HDF5 cannot checksum variable-length strings; root attr samples_sha256 covers the whole table
        checks = {} if dtype is text else {"chunks": (min(n, 65536),), "fletcher32": True}
        samples.create_dataset(key, data=data, dtype=dtype, **checks)
    if t.label_matrix is not None:
        dst.attrs["labels"] = json.dumps(list(t.classes))
        dst.attrs["label_codes"] = json.dumps({"positive": 1, "negative": 0, "uncertain": -1, "blank": -2})
        samples.create_dataset(LABEL_MATRIX, data=t.label_matrix, dtype=np.int8,
                               chunks=(min(n, 65536), t.label_matrix.shape[1]), fletcher32=True)
    dst.create_group(FEATURES)
    dst.create_group(VALID)


def _stamp_set(file: Path, table: SamplesTable, spec: FeatureSetSpec, stat: dict, skipped: list[str]) -> None:
    """Write a finished set file's attributes (identity, versions, timings, skipped rows) and mark it complete."""
    with h5py.File(file, "a", libver=LIBVER, locking=False) as f:
        ds = f[SET_FEATURES]
        valid = np.asarray(f[SET_VALID][()], dtype=bool)
        skipped_ids = [table.ids[i] for i in np.flatnonzero(~valid)]
        if skipped and set(skipped) != set(skipped_ids):
            logger.debug("skipped list given to finish differs from the invalid rows of %s", spec.name)
        versions = {"headstart": headstart.__version__, "h5py": h5py.__version__, "numpy": np.__version__}
        versions.update(stat.get("versions", {}))
        for key, value in spec.identity().items():  # what `set_fingerprint` recomputes the fingerprint from
            ds.attrs[key] = json.dumps(value, sort_keys=True) if key in FEATURE_JSON_ATTRS else value
        for key, value in spec.attrs.items():  # layer, pool, provider...: descriptive, HDF5 has no None
            if value is not None and key not in ds.attrs:
                ds.attrs[key] = str(value) if isinstance(value, str) else value
        ds.attrs.update(fingerprint=spec.fingerprint, versions=json.dumps(versions, sort_keys=True))
        for key in FEATURE_STAT_KEYS:  # "" or 0 where the loop recorded none
            ds.attrs[key] = stat[key] if stat.get(key) is not None else "" if key in ("device", "precision") else 0
        for key, value in stat.items():  # extra scalar timings the extraction loop chose to record
            if key not in FEATURE_STAT_KEYS and isinstance(value, (int, float, str, bool)):
                ds.attrs[key] = str(value) if isinstance(value, str) else value  # h5py refuses str subclasses
        ds.attrs.update(complete=True, n_skipped=len(skipped_ids),
                        skipped_ids=json.dumps(skipped_ids[:MAX_SKIPPED_IDS_ATTR]))
    durable.fsync_file(file)
