"""The publisher (rank 0): build the complete new cache file under a temporary name and rename it into place.

The published file is never modified in place, so a reader or a crash at any moment sees the old complete file or
the new complete file. What the new file holds follows the plan: a fresh table (new file), a new table with the
kept sets re-stamped (re-split), or the old table and kept sets copied (add sets); then the newly staged sets.
The image metadata (/samples/meta) the file already has is kept; a file without it gets the staged metadata.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import h5py
import numpy as np

import headstart
from headstart import io as durable
from headstart.cache.fingerprint import compute_samples_sha256
from headstart.cache.header import open_readonly
from headstart.cache.meta import META, META_PATH, write_meta
from headstart.cache.plan import Action, Plan
from headstart.cache.request import CacheRequest, FeatureSetSpec, SamplesTable
from headstart.cache.schema import (
    FEATURE_COMPRESSION,
    FEATURE_JSON_ATTRS,
    FEATURE_STAT_KEYS,
    FEATURES,
    FORMAT_NAME,
    LABEL_MATRIX,
    FORMAT_VERSION,
    MAX_SKIPPED_IDS_ATTR,
    SAMPLES,
    VALID,
    chunk_rows,
)
from headstart.cache.staging import disk_errors, disk_full_message
from headstart.errors import CacheError

logger = logging.getLogger(__name__)

LIBVER = ("v108", "latest")  # 1.8 file format: dense attribute storage, readable by every h5py in use

Arrays = dict[str, tuple[np.ndarray, np.ndarray]]  # set name -> (features (N, D), valid (N,))


def publish(request: CacheRequest, plan: Plan, arrays: Arrays, *, stats: dict[str, dict], skipped: list[str],
            staging: Path, meta: dict[str, np.ndarray] | None = None) -> None:
    """Write the file `plan` describes, with `arrays` for its todo sets, and rename it over `request.path`.

    `meta`: the staged /samples/meta columns (`Stager.assemble_meta`), written unless the file already has some."""
    path = request.path
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    needed = sum(x.nbytes + v.nbytes for x, v in arrays.values())
    if plan.action is not Action.NEW_FILE:
        needed += path.stat().st_size  # kept sets are copied
    if shutil.disk_usage(path.parent).free < needed + (1 << 20):
        raise CacheError(disk_full_message(path, path, staging, needed))
    try:
        with disk_errors(path, tmp, staging):
            _build(tmp, request, plan, arrays, stats, skipped, meta)
            durable.replace_durably(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("wrote %s (%s)", path, ", ".join(plan.todo) or "new splits, features kept")


def _build(tmp: Path, request: CacheRequest, plan: Plan, arrays: Arrays, stats: dict[str, dict],
           skipped: list[str], meta: dict[str, np.ndarray] | None) -> None:
    with h5py.File(tmp, "w", libver=LIBVER) as dst:
        if plan.action is Action.NEW_FILE:
            _write_table(dst, request.table)
        elif plan.action is Action.RESPLIT:
            _write_table(dst, request.table)  # the new splits; features below are copied unchanged
            with open_readonly(request.path) as src:
                if META_PATH in src:  # same images, so the same metadata
                    src.copy(src[META_PATH], dst[SAMPLES], name=META)
                for name, fingerprint in plan.restamp.items():
                    src.copy(src[f"{FEATURES}/{name}"], dst[FEATURES], name=name)
                    src.copy(src[f"{VALID}/{name}"], dst[VALID], name=name)
                    dst[f"{FEATURES}/{name}"].attrs["fingerprint"] = fingerprint
        else:
            with open_readonly(request.path) as src:
                for key, value in src.attrs.items():
                    dst.attrs[key] = value
                src.copy(src[SAMPLES], dst, name=SAMPLES)
                dst.require_group(FEATURES)
                dst.require_group(VALID)
                for name in plan.keep:
                    src.copy(src[f"{FEATURES}/{name}"], dst[FEATURES], name=name)
                    src.copy(src[f"{VALID}/{name}"], dst[VALID], name=name)
        if meta is not None and META_PATH not in dst:
            write_meta(dst, meta)
        for name in plan.todo:
            features, valid = arrays[name]
            _write_set(dst, request.table, request.specs[name], features, valid, stats.get(name, {}), skipped)
        dst.flush()


def _write_table(dst: h5py.File, t: SamplesTable) -> None:
    dst.attrs["format"] = FORMAT_NAME
    dst.attrs["format_version"] = FORMAT_VERSION
    dst.attrs["manifest_hash"] = t.manifest_hash
    dst.attrs["samples_sha256"] = compute_samples_sha256(
        ids=t.ids, labels=t.labels, splits=t.splits, groups=t.groups, classes=t.classes
    )
    dst.attrs["created_by"] = f"headstart {headstart.__version__}"
    dst.attrs["classes"] = json.dumps(list(t.classes))
    if t.task:
        dst.attrs["task"] = t.task
    for key, value in t.attrs.items():
        dst.attrs[key] = json.dumps(value, sort_keys=True, default=str)
    samples = dst.create_group(SAMPLES)
    text = h5py.string_dtype("utf-8")
    n = len(t)
    for key, values, dtype in (
        ("id", t.ids, text), ("label", t.labels, np.int64), ("split", t.splits, text), ("group", t.groups, text)
    ):
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


def _write_set(dst: h5py.File, table: SamplesTable, spec: FeatureSetSpec, features: np.ndarray, valid: np.ndarray,
               stat: dict, skipped: list[str]) -> None:
    n = len(table)
    ds = dst[FEATURES].create_dataset(
        spec.name, data=features, chunks=(chunk_rows(spec.dim, features.dtype.itemsize, n), spec.dim),
        fletcher32=True, compression=FEATURE_COMPRESSION,
    )
    dst[VALID].create_dataset(spec.name, data=valid, chunks=(min(n, 1 << 20),), fletcher32=True)
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
    ds.attrs["fingerprint"] = spec.fingerprint
    ds.attrs["versions"] = json.dumps(versions, sort_keys=True)
    for key in FEATURE_STAT_KEYS:
        default = "" if key in ("device", "precision") else 0
        value = stat.get(key, default)
        ds.attrs[key] = value if value is not None else default
    for key, value in stat.items():  # extra scalar timings the extraction loop chose to record
        if key not in FEATURE_STAT_KEYS and isinstance(value, (int, float, str, bool)):
            ds.attrs[key] = str(value) if isinstance(value, str) else value  # h5py refuses str subclasses
    ds.attrs["complete"] = True
    ds.attrs["n_skipped"] = len(skipped_ids)
    ds.attrs["skipped_ids"] = json.dumps(skipped_ids[:MAX_SKIPPED_IDS_ATTR])
