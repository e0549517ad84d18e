"""Resumable, atomic writing of feature sets into a cache file.

Batches are staged durably in `<cache>.parts/` (see `staging.py`) while extraction runs; `finish` then builds
the complete new file under a temporary name and renames it over the cache. The published file is never
modified in place, so a reader or a crash at any moment sees the old complete file or the new complete file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

import headstart
from headstart import io as durable
from headstart.cache.fingerprint import compute_fingerprint, compute_samples_sha256
from headstart.cache.lock import WriterLock
from headstart.cache.reader import FeatureCache
from headstart.cache.schema import (
    FEATURE_COMPRESSION,
    FEATURE_DTYPES,
    FEATURE_STAT_KEYS,
    FEATURES,
    FORMAT_NAME,
    FORMAT_VERSION,
    MAX_SKIPPED_IDS_ATTR,
    SAMPLES,
    SET_NAME_RE,
    VALID,
    chunk_rows,
    lock_path,
    staging_dir,
)
from headstart.cache.staging import StagingArea
from headstart.errors import CacheError, CacheMismatchError, ConfigError

logger = logging.getLogger(__name__)

LIBVER = ("v108", "latest")  # 1.8 file format: dense attribute storage, readable by every h5py in use
_OVERWRITE_HINT = "pass --overwrite to replace it, or -b with another name"


@dataclass
class SamplesTable:
    """The rows of the cache: one per image, in a fixed order that every feature set shares."""

    ids: list[str]  # unique sample ids (path relative to DATA, or "train/00012" for npz rows)
    labels: list[int]  # index into `classes`
    splits: list[str]  # "train" | "val" | "test"
    groups: list[str]  # patient id, "" when unknown
    classes: list[str]  # class names; `labels` index into this
    manifest_hash: str  # identifies images, labels and splits; part of every fingerprint
    attrs: dict = field(default_factory=dict)  # extra JSON-able root metadata (source, split_config, duplicates)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class FeatureSetSpec:
    """One requested feature set: what computes it and how it is stored."""

    name: str  # HDF5 name under /features; defaults to the backbone name at the CLI
    backbone: str  # registry name
    weights_tag: str  # "imagenet:<enum>", "random" or "file:<name>"
    weights_sha256: str  # "" for random weights
    preprocessing: dict  # Preprocessing.to_dict()
    dim: int  # feature dimension D
    fingerprint: str  # compute_fingerprint(...) of the fields above plus the table's manifest hash
    dtype: str = "float16"  # storage dtype: float16 halves the file; float32 on request


ROLES = ("writer", "stager")


class CacheWriter:
    """Adds feature sets to a cache file, resumably and atomically. Use as a context manager (holds the lock).

    `role="stager"` is for the other ranks of a torchrun job: it takes no lock, never prepares, discards or
    publishes, and only stages batches into the staging area that the writer (rank 0, holding the lock) prepared.
    `rank` tags the part files so that ranks sharing the folder never collide.
    """

    def __init__(
        self, path: str | Path, table: SamplesTable, specs: list[FeatureSetSpec], *, overwrite: bool = False,
        role: str = "writer", rank: int | None = None,
    ):
        if role not in ROLES:
            raise ValueError(f"role {role!r}: expected one of {ROLES}")
        self.path = Path(path)
        self.table = table
        self.specs = {spec.name: spec for spec in specs}
        self.overwrite = overwrite
        self.role = role
        _check_table(table)
        _check_specs(specs, table)
        if self.path.is_dir():
            raise CacheError(
                f"output {self.path} is a folder; expected a cache file path such as {self.path}/features.h5"
            )
        if not self.path.parent.is_dir():
            raise CacheError(f"folder {self.path.parent} does not exist; create it or choose another -o path")
        self.staging = StagingArea(staging_dir(self.path), n_rows=len(table), manifest_hash=table.manifest_hash,
                                   rank=rank)
        self._lock = WriterLock(lock_path(self.path), target=self.path)
        self._entered = False
        self._plan()

    # planning: read-only --------------------------------------------------------------------------------
    def _plan(self) -> None:
        """Decide what to extract and refuse mismatches, without touching anything on disk."""
        self._rebuild = True  # build the file from the table, keeping no existing content
        self._keep: list[str] = []  # existing sets copied unchanged into the new file
        self._resplit: dict[str, str] = {}  # kept set -> its fingerprint under the new splits (re-split only)
        existing = self._read_existing()
        todo = list(self.specs)
        if existing is not None:
            if (existing.root_attrs.get("manifest_hash") != self.table.manifest_hash and not self.overwrite
                    and _same_images(existing, self.table)):
                todo = self._plan_resplit(existing)
            elif existing.root_attrs.get("manifest_hash") != self.table.manifest_hash:
                if not self.overwrite:
                    raise CacheMismatchError(
                        f"{self.path} was built from a different data set or splits (manifest "
                        f"{str(existing.root_attrs.get('manifest_hash'))[:12]}..., this request "
                        f"{self.table.manifest_hash[:12]}...); use another -o path or --overwrite to rebuild it"
                    )
                if existing.feature_sets:
                    logger.warning("--overwrite: rebuilding %s, dropping feature sets %s built from other data",
                                   self.path, ", ".join(existing.feature_sets))
            else:
                self._rebuild = False
                todo = []
                for name, spec in self.specs.items():
                    have = existing.feature_sets.get(name)
                    if have is None or self.overwrite or not have.get("complete"):
                        todo.append(name)
                        continue
                    if have.get("fingerprint") != spec.fingerprint:
                        raise CacheMismatchError(
                            f"feature set '{name}' in {self.path} has fingerprint "
                            f"{str(have.get('fingerprint'))[:12]}..., "
                            f"this request has {spec.fingerprint[:12]}... (backbone, weights or preprocessing differ); "
                            f"{_OVERWRITE_HINT}"
                        )
                    if have.get("dtype") != spec.dtype:
                        raise CacheMismatchError(
                            f"feature set '{name}' in {self.path} is stored as {have.get('dtype')}, this request asks "
                            f"for {spec.dtype}; {_OVERWRITE_HINT}"
                        )
                self._keep = [name for name in existing.feature_sets if name not in todo]
        self.todo: list[str] = todo
        self._check_staging(self.staging.read_state())

    def _plan_resplit(self, existing: FeatureCache) -> list[str]:
        """Same images, labels and groups, other splits: splits are metadata, so no feature is recomputed.

        Every complete set is kept and re-stamped with its fingerprint under the new manifest (computed from its
        own attributes, exactly as `verify` recomputes it); the published file carries the new /samples/split.
        """
        self._rebuild = False
        todo = []
        for name, have in existing.feature_sets.items():
            if not have.get("complete"):
                continue
            try:
                self._resplit[name] = compute_fingerprint(
                    backbone=have["backbone"], weights_tag=have["weights"], weights_sha256=have["weights_sha256"],
                    preprocessing=have["preprocessing"], manifest_hash=self.table.manifest_hash)
            except (KeyError, TypeError, ValueError):
                raise CacheError(f"feature set '{name}' in {self.path} lacks the attributes its fingerprint is "
                                 f"computed from; run `headstart cache verify`, or pass --overwrite") from None
        for name, spec in self.specs.items():
            if name not in self._resplit:
                todo.append(name)
            elif self._resplit[name] != spec.fingerprint:
                raise CacheMismatchError(
                    f"feature set '{name}' in {self.path} was extracted with another backbone, weights or "
                    f"preprocessing than this request; {_OVERWRITE_HINT}")
            elif existing.feature_sets[name].get("dtype") != spec.dtype:
                raise CacheMismatchError(
                    f"feature set '{name}' in {self.path} is stored as {existing.feature_sets[name].get('dtype')}, "
                    f"this request asks for {spec.dtype}; {_OVERWRITE_HINT}")
        self._keep = list(self._resplit)
        logger.info("%s: same images with new splits; keeping %s without re-extracting", self.path,
                    ", ".join(self._keep) or "no feature sets")
        return todo

    def _read_existing(self) -> FeatureCache | None:
        if not self.path.exists():
            return None
        try:
            with FeatureCache(self.path) as cache:
                return cache  # attributes stay readable after close; only `load` needs the open file
        except CacheError as exc:
            if getattr(exc, "kind", "damaged") in ("not-hdf5", "newer"):
                raise  # --overwrite never replaces a file that is not ours, or one from a newer headstart
            if not self.overwrite:
                raise exc if "--overwrite" in str(exc) else CacheError(f"{exc}; or pass --overwrite to replace it")
            logger.warning("--overwrite: replacing unreadable cache %s (%s)", self.path, exc)
            return None

    def _check_staging(self, state: dict | None) -> None:
        if state is None or not self.todo or self.overwrite:
            return  # nothing staged, nothing to add, or --overwrite discards a mismatched staging area
        folder = self.staging.folder
        if not self.staging.compatible(state):
            raise CacheMismatchError(
                f"{folder} holds a partial extraction for a different data set or splits; rerun the original "
                f"command to finish it, or pass --overwrite to discard it"
            )
        for name in self.todo:
            staged = state["sets"].get(name)
            spec = self.specs[name]
            if staged is not None and _staged_key(staged) != _staged_key(_spec_state(spec)):
                raise CacheMismatchError(
                    f"a partial extraction of feature set '{name}' in {folder} has fingerprint "
                    f"{str(staged.get('fingerprint'))[:12]}... ({staged.get('dtype')}), this request has "
                    f"{spec.fingerprint[:12]}... ({spec.dtype}); rerun the original command to finish it, "
                    f"or pass --overwrite to discard it"
                )

    # context: lock + staging ------------------------------------------------------------------------------
    def __enter__(self) -> "CacheWriter":
        if self.role == "stager":
            self._join_staging()
            self._entered = True
            return self
        self._lock.acquire()
        try:
            self._plan()  # another writer may have finished while we waited for the lock
            self._prepare_staging()
        except BaseException:
            self._lock.release()
            raise
        self._entered = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._entered = False
        self._lock.release()  # a no-op for a stager, which never acquired it

    def _join_staging(self) -> None:
        """A stager uses the staging area as the writer left it; it must describe exactly this request."""
        state = self.staging.read_state()
        wanted = {name: _spec_state(self.specs[name]) for name in self.todo}
        if self.todo and (
            not self.staging.compatible(state)
            or any(_staged_key(state["sets"].get(n, {})) != _staged_key(s) for n, s in wanted.items())
        ):
            raise CacheMismatchError(
                f"{self.staging.folder} was not prepared for this request by the writer (rank 0); start every rank "
                f"with the same command"
            )
        self._staged_sets = state["sets"] if state else {}
        self.staging.skip_existing_numbers()  # the writer already scanned (and cleaned) the parts

    def rescan(self) -> None:
        """Re-read the staging area, so `done_mask` and `finish` see parts other processes (ranks) staged."""
        self._require_entered()
        self.staging.scan(self._staged_sets, delete_damaged=False)

    def _prepare_staging(self) -> None:
        state = self.staging.read_state()
        wanted = {name: _spec_state(self.specs[name]) for name in self.todo}
        conflict = state is not None and (
            not self.staging.compatible(state)
            or any(n in state["sets"] and _staged_key(state["sets"][n]) != _staged_key(s) for n, s in wanted.items())
        )
        if self.staging.folder.exists() and (state is None or conflict):
            if conflict:
                logger.warning("--overwrite: discarding the partial extraction in %s", self.staging.folder)
            self.staging.discard()
            state = None
        if not self.todo:
            return
        sets = {**(state["sets"] if state else {}), **wanted}
        with self._disk_errors(self.staging.folder):
            self.staging.write_state(sets)
        self._staged_sets = sets
        self.staging.scan(sets, delete_damaged=True)
        done = int(self.done_mask().sum())
        if done:
            logger.info("resuming: %d of %d images already extracted in %s", done, len(self.table), self.staging.folder)

    # extraction API ---------------------------------------------------------------------------------------
    def done_mask(self) -> np.ndarray:
        """(N,) bool: rows already staged for every set still to do; extraction skips them."""
        if not self._entered and not hasattr(self, "_staged_sets"):
            state = self.staging.read_state()
            if state is None or not self.staging.compatible(state):
                return np.zeros(len(self.table), dtype=bool) if self.todo else np.ones(len(self.table), dtype=bool)
            self.staging.scan(state["sets"], delete_damaged=False)
        return self.staging.done_mask(self.todo)

    def write_batch(self, rows: np.ndarray, features: dict[str, np.ndarray], valid: np.ndarray) -> None:
        """Stage one batch durably. Rows of skipped images (valid False) are stored as zeros."""
        self._require_entered()
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        valid = np.asarray(valid, dtype=bool).reshape(-1)
        n = len(rows)
        if valid.shape != (n,):
            raise ValueError(f"valid has {valid.shape[0]} entries for {n} rows")
        if n and (rows.min() < 0 or rows.max() >= len(self.table) or len(np.unique(rows)) != n):
            raise ValueError("rows must be distinct indices into the samples table")
        if set(features) != set(self.todo):
            raise ValueError(f"features given for {sorted(features)}, expected exactly {sorted(self.todo)}")
        staged = {}
        for name in self.todo:
            spec = self.specs[name]
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
                    f"at image {self.table.ids[rows[0]]}; try --precision fp32 or --feature-dtype float32"
                )
            staged[name] = arr
        with self._disk_errors(self.staging.folder):
            self.staging.write_part(rows, valid, staged)

    def finish(self, *, stats: dict[str, dict], skipped: list[str]) -> None:
        """Publish every todo set atomically into the cache file, then delete the staging area."""
        self._require_entered()
        if self.role != "writer":
            raise RuntimeError("only the writer (rank 0, holding the lock) may publish the cache")
        if not self.todo and not self._resplit:
            self._drop_stale_staging()
            return
        leftover = [n for n in getattr(self, "_staged_sets", {}) if n not in self.todo]
        if leftover:
            logger.warning("discarding partial extraction of %s staged in %s", ", ".join(leftover), self.staging.folder)
        arrays = self._assemble()
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        needed = sum(x.nbytes + v.nbytes for x, v in arrays.values())
        if not self._rebuild:
            needed += self.path.stat().st_size
        if shutil.disk_usage(self.path.parent).free < needed + (1 << 20):
            raise CacheError(self._disk_full_message(self.path, needed))
        try:
            with self._disk_errors(tmp):
                self._build(tmp, arrays, stats, skipped)
                durable.replace_durably(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        logger.info("wrote %s (%s)", self.path, ", ".join(self.todo) or "new splits, features kept")
        self.staging.discard()

    # publishing ---------------------------------------------------------------------------------------------
    def _assemble(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Full (N, D) arrays per todo set from the staged parts, in row order; later parts win."""
        n = len(self.table)
        out = {}
        for name in self.todo:
            spec = self.specs[name]
            out[name] = (np.zeros((n, spec.dim), dtype=spec.dtype), np.zeros(n, dtype=bool))
        covered = {name: np.zeros(n, dtype=bool) for name in self.todo}
        for part in sorted(self.staging.parts, key=lambda p: p.order):
            try:
                rows, valid, feats = self.staging.read_part(part, self._staged_sets)
            except Exception as exc:  # noqa: BLE001
                part.path.unlink(missing_ok=True)
                raise CacheError(
                    f"staged batch {part.path} was damaged after it was written ({exc}); rerun the same command "
                    f"to extract its rows again"
                ) from None
            for name, arr in feats.items():
                if name in out:
                    out[name][0][rows] = arr
                    out[name][1][rows] = valid
                    covered[name][rows] = True
        for name, mask in covered.items():
            if not mask.all():
                raise CacheError(
                    f"cannot finish {self.path}: {int((~mask).sum())} of {n} images of feature set '{name}' were "
                    f"never extracted; rerun the same command to resume"
                )
        return out

    def _build(self, tmp: Path, arrays: dict, stats: dict[str, dict], skipped: list[str]) -> None:
        with h5py.File(tmp, "w", libver=LIBVER) as dst:
            if self._rebuild:
                self._write_table(dst)
            elif self._resplit:
                self._write_table(dst)  # the new splits; features below are copied unchanged
                with h5py.File(self.path, "r", locking=False) as src:
                    for name, fingerprint in self._resplit.items():
                        src.copy(src[f"{FEATURES}/{name}"], dst[FEATURES], name=name)
                        src.copy(src[f"{VALID}/{name}"], dst[VALID], name=name)
                        dst[f"{FEATURES}/{name}"].attrs["fingerprint"] = fingerprint
            else:
                with h5py.File(self.path, "r", locking=False) as src:
                    for key, value in src.attrs.items():
                        dst.attrs[key] = value
                    src.copy(src[SAMPLES], dst, name=SAMPLES)
                    dst.require_group(FEATURES)
                    dst.require_group(VALID)
                    for name in self._keep:
                        src.copy(src[f"{FEATURES}/{name}"], dst[FEATURES], name=name)
                        src.copy(src[f"{VALID}/{name}"], dst[VALID], name=name)
            for name in self.todo:
                features, valid = arrays[name]
                self._write_set(dst, self.specs[name], features, valid, stats.get(name, {}), skipped)
            dst.flush()

    def _write_table(self, dst: h5py.File) -> None:
        t = self.table
        dst.attrs["format"] = FORMAT_NAME
        dst.attrs["format_version"] = FORMAT_VERSION
        dst.attrs["manifest_hash"] = t.manifest_hash
        dst.attrs["samples_sha256"] = compute_samples_sha256(
            ids=t.ids, labels=t.labels, splits=t.splits, groups=t.groups, classes=t.classes
        )
        dst.attrs["created_by"] = f"headstart {headstart.__version__}"
        dst.attrs["classes"] = json.dumps(list(t.classes))
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
        dst.create_group(FEATURES)
        dst.create_group(VALID)

    def _write_set(self, dst, spec: FeatureSetSpec, features, valid, stat: dict, skipped: list[str]) -> None:
        n = len(self.table)
        ds = dst[FEATURES].create_dataset(
            spec.name, data=features, chunks=(chunk_rows(spec.dim, features.dtype.itemsize, n), spec.dim),
            fletcher32=True, compression=FEATURE_COMPRESSION,
        )
        dst[VALID].create_dataset(spec.name, data=valid, chunks=(min(n, 1 << 20),), fletcher32=True)
        skipped_ids = [self.table.ids[i] for i in np.flatnonzero(~valid)]
        if skipped and set(skipped) != set(skipped_ids):
            logger.debug("skipped list given to finish differs from the invalid rows of %s", spec.name)
        versions = {"headstart": headstart.__version__, "h5py": h5py.__version__, "numpy": np.__version__}
        versions.update(stat.get("versions", {}))
        ds.attrs["backbone"] = spec.backbone
        ds.attrs["weights"] = spec.weights_tag
        ds.attrs["weights_sha256"] = spec.weights_sha256
        ds.attrs["preprocessing"] = json.dumps(spec.preprocessing, sort_keys=True)
        ds.attrs["fingerprint"] = spec.fingerprint
        ds.attrs["versions"] = json.dumps(versions, sort_keys=True)
        for key in FEATURE_STAT_KEYS:
            default = "" if key in ("device", "precision") else 0
            value = stat.get(key, default)
            ds.attrs[key] = value if value is not None else default
        for key, value in stat.items():  # extra scalar timings the extraction loop chose to record
            if key not in FEATURE_STAT_KEYS and isinstance(value, (int, float, str, bool)):
                ds.attrs[key] = value
        ds.attrs["complete"] = True
        ds.attrs["n_skipped"] = len(skipped_ids)
        ds.attrs["skipped_ids"] = json.dumps(skipped_ids[:MAX_SKIPPED_IDS_ATTR])

    def _drop_stale_staging(self) -> None:
        if self.staging.folder.exists():
            logger.info("removing finished staging area %s", self.staging.folder)
            self.staging.discard()

    # helpers ----------------------------------------------------------------------------------------------
    def _require_entered(self) -> None:
        if not self._entered:
            raise RuntimeError("use CacheWriter as a context manager: `with CacheWriter(...) as writer:`")

    @contextmanager
    def _disk_errors(self, where: Path):
        """Turn out-of-space and other I/O failures into one-line CacheErrors; finished work stays put."""
        try:
            yield
        except CacheError:
            raise
        except OSError as exc:
            if durable.is_disk_full(exc) or _nearly_full(self.path.parent):
                raise CacheError(self._disk_full_message(where)) from None
            raise CacheError(
                f"could not write {where} ({exc}); {self.path} is unchanged; fix the problem and rerun the same "
                f"command to resume"
            ) from None

    def _disk_full_message(self, where: Path, needed: int | None = None) -> str:
        need = f" (about {needed / 2**20:.0f} MiB needed)" if needed else ""
        return (
            f"disk full while writing {where}{need}; {self.path} is unchanged and finished batches are kept in "
            f"{self.staging.folder}; free space and rerun the same command to resume"
        )


def _nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False


def _same_images(existing: FeatureCache, table: SamplesTable) -> bool:
    """True when only the split column differs: same ids in the same order, same labels, groups and classes."""
    return (list(existing.classes) == list(table.classes) and list(existing.ids) == list(table.ids)
            and np.array_equal(existing.labels, np.asarray(table.labels)) and list(existing.groups) == list(table.groups))


def _spec_state(spec: FeatureSetSpec) -> dict:
    return {"fingerprint": spec.fingerprint, "dim": spec.dim, "dtype": spec.dtype}


def _staged_key(entry: dict) -> tuple:
    return entry.get("fingerprint"), entry.get("dim"), entry.get("dtype")


def _check_table(t: SamplesTable) -> None:
    n = len(t.ids)
    if n == 0:
        raise ValueError("the samples table is empty")
    for name in ("labels", "splits", "groups"):
        if len(getattr(t, name)) != n:
            raise ValueError(f"samples table has {n} ids but {len(getattr(t, name))} {name}")
    if len(set(t.ids)) != n:
        raise ValueError("sample ids must be unique")
    labels = np.asarray(t.labels)
    if labels.min() < 0 or labels.max() >= len(t.classes):
        raise ValueError(f"labels must index the {len(t.classes)} classes")


def _check_specs(specs: list[FeatureSetSpec], table: SamplesTable) -> None:
    if not specs:
        raise ValueError("no feature sets requested")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"feature set names repeat: {names}; give each -b a distinct name")
    for spec in specs:
        if not SET_NAME_RE.match(spec.name):
            raise ConfigError(f"feature set name {spec.name!r} is not allowed; use letters, digits, '_', '-' or '.'")
        if spec.dtype not in FEATURE_DTYPES:
            raise ConfigError(f"feature dtype {spec.dtype!r} is not supported; use one of {', '.join(FEATURE_DTYPES)}")
        if spec.dim <= 0:
            raise ValueError(f"feature set {spec.name!r} has dim {spec.dim}")
        expected = compute_fingerprint(
            backbone=spec.backbone, weights_tag=spec.weights_tag, weights_sha256=spec.weights_sha256,
            preprocessing=spec.preprocessing, manifest_hash=table.manifest_hash,
        )
        if spec.fingerprint != expected:
            raise ValueError(
                f"feature set {spec.name!r}: fingerprint does not match its fields and the table's manifest hash"
            )
