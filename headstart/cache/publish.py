"""The publisher (rank 0): build the new cache file under a temporary name and rename it into place.

The cache file holds the sample table and, per feature set, `/features/<name>` and `/valid/<name>` as HDF5
external links to the set file in `<cache>.sets/` (plain h5py follows them; the path is relative to the cache
file's folder). A set file is written while nothing links to it and never changes once linked, so a reader or a
crash at any moment sees the old complete cache or the new one. Adding a set therefore writes only the new set
file and a new small cache file: the kept sets' links are copied, never their bytes. Caches written before set
files existed keep their in-file sets (copied once, as before). A re-split re-stamps the kept sets' fingerprints,
which live in their files, so it writes new set files for them. Set files no cache links to are deleted last.
"""

from __future__ import annotations

import json
import logging
import os
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
    FEATURE_JSON_ATTRS,
    FEATURE_STAT_KEYS,
    FEATURES,
    FORMAT_NAME,
    LABEL_MATRIX,
    FORMAT_VERSION,
    LIBVER,
    MAX_SKIPPED_IDS_ATTR,
    SAMPLES,
    SET_FEATURES,
    SET_VALID,
    VALID,
    set_file_name,
    sets_dir,
)
from headstart.cache.staging import disk_errors

logger = logging.getLogger(__name__)


def publish(request: CacheRequest, plan: Plan, files: dict[str, Path], *, stats: dict[str, dict],
            skipped: list[str], staging: Path, meta: dict[str, np.ndarray] | None = None) -> None:
    """Stamp the todo sets' files (`files`, complete), write the cache file `plan` describes linking to them, and
    rename it over `request.path`; then delete the set files nothing links to.

    `meta`: the journaled /samples/meta columns (`Stager.assemble_meta`), written unless the file already has some."""
    path = request.path
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with disk_errors(path, tmp, staging):
            for name, file in files.items():
                _stamp_set(file, request.table, request.specs[name], stats.get(name, {}), skipped)
            _build(tmp, request, plan, files, meta)
            durable.replace_durably(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    collect_garbage(path)
    logger.info("wrote %s (%s)", path, ", ".join(plan.todo) or "new splits, features kept")


def _build(tmp: Path, request: CacheRequest, plan: Plan, files: dict[str, Path],
           meta: dict[str, np.ndarray] | None) -> None:
    with h5py.File(tmp, "w", libver=LIBVER) as dst:
        if plan.action is Action.NEW_FILE:
            _write_table(dst, request.table)
        elif plan.action is Action.RESPLIT:
            _write_table(dst, request.table)  # the new splits; kept sets get new files with their new fingerprints
            with open_readonly(request.path) as src:
                if META_PATH in src:  # same images, so the same metadata
                    src.copy(src[META_PATH], dst[SAMPLES], name=META)
                for name, fingerprint in plan.restamp.items():
                    _link(dst, name, _restamped(request.path, src, name, fingerprint))
        else:
            with open_readonly(request.path) as src:
                for key, value in src.attrs.items():
                    dst.attrs[key] = value
                src.copy(src[SAMPLES], dst, name=SAMPLES)
                dst.require_group(FEATURES)
                dst.require_group(VALID)
                for name in plan.keep:
                    _keep(src, dst, name)
        if meta is not None and META_PATH not in dst:
            write_meta(dst, meta)
        for name in plan.todo:
            _link(dst, name, files[name])
        dst.flush()


def _link(dst: h5py.File, name: str, file: Path) -> None:
    """Link /features/<name> and /valid/<name> to a set file, by its path relative to the cache file's folder."""
    relative = f"{file.parent.name}/{file.name}"
    dst[FEATURES][name] = h5py.ExternalLink(relative, SET_FEATURES)
    dst[VALID][name] = h5py.ExternalLink(relative, SET_VALID)


def _keep(src: h5py.File, dst: h5py.File, name: str) -> None:
    """Carry a kept set over: its links (no bytes copied), or for an older cache its in-file datasets."""
    for group in (FEATURES, VALID):
        link = src[group].get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            dst[group][name] = h5py.ExternalLink(link.filename, link.path)
        else:
            src.copy(src[f"{group}/{name}"], dst[group], name=name)


def _restamped(path: Path, src: h5py.File, name: str, fingerprint: str) -> Path:
    """A new set file holding a kept set's data with the fingerprint it has under the new splits."""
    folder = sets_dir(path)
    folder.mkdir(exist_ok=True)
    file = folder / set_file_name(name, fingerprint)
    with h5py.File(file, "w", libver=LIBVER) as out:
        src.copy(src[f"{FEATURES}/{name}"], out, name=SET_FEATURES)
        src.copy(src[f"{VALID}/{name}"], out, name=SET_VALID)
        out[SET_FEATURES].attrs["fingerprint"] = fingerprint
    durable.fsync_file(file)
    return file


def collect_garbage(path: Path) -> None:
    """Delete the set files the published cache does not link to (replaced, re-stamped or abandoned sets)."""
    folder = sets_dir(path)
    if not folder.is_dir():
        return
    with open_readonly(path) as f:
        linked = {Path(link.filename).name for group in (FEATURES, VALID) for key in f[group]
                  for link in [f[group].get(key, getlink=True)] if isinstance(link, h5py.ExternalLink)}
    for file in folder.iterdir():
        if file.name not in linked:
            file.unlink(missing_ok=True)
    if not any(folder.iterdir()):
        folder.rmdir()
    durable.fsync_dir(folder.parent)


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
    durable.fsync_file(file)
