"""Read-only access to a cache file, and `verify_cache`, which checks it end to end.

Every failure to open or read becomes a one-line CacheError that names the file and says what to do; what is at
the path and its header are read by `header.open_cache_file` (never locking, JSON only).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from headstart.backbones.names import DEFAULT_POOL, FINAL_LAYER
from headstart.cache.fingerprint import (FINGERPRINT_VERSION, VERSION_NOTES, changed_parts, compute_samples_sha256,
                                         set_fingerprint, stored_version)
from headstart.cache.header import CacheHeader, FileKind, open_cache_file
from headstart.cache.plan import table_problems
from headstart.cache.schema import EXTERNAL, FEATURES, VALID, staging_dir
from headstart.cache.staging import StagingArea
from headstart.data.types import SPLITS
from headstart.errors import CacheError, one_line

logger = logging.getLogger(__name__)


class FeatureCache(CacheHeader):
    """A read-only view of one cache file: its header (sample table, attributes) eagerly, feature sets on `load`."""

    __hash__ = object.__hash__  # an open file, not a value: identity, not the header's fields, decides equality
    __eq__ = object.__eq__

    def __init__(self, path: str | Path):
        header, self._file = open_cache_file(path)
        if header.kind is not FileKind.CACHE:
            raise CacheError(header.message)
        vars(self).update(vars(header))
        # plain feature sets; their cached views (extract --views/--tta: attribute view_of) are kept apart
        self.feature_sets: dict[str, dict] = {n: m for n, m in header.feature_sets.items() if not m.get("view_of")}
        self.view_sets: dict[str, dict] = {n: m for n, m in header.feature_sets.items() if m.get("view_of")}

    @property
    def n_samples(self) -> int:
        return len(self.ids)

    def views_of(self, name: str, kind: str) -> dict | None:
        """The attributes of set `name`'s complete view set of `kind` ("views" or "tta"), or None."""
        meta = self.view_sets.get(f"{name}.{kind}")
        return meta if meta is not None and meta.get("view_of") == name and meta["complete"] else None

    def load_views(self, name: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(V float32 (N, K, D), has bool (N,)): the cached views of set `name` (see `extract.views`); `has`
        marks the rows that have them. CacheError naming the extract options when there are none."""
        meta = self.views_of(name, kind)
        if meta is None:
            option = "--views K" if kind == "views" else "--tta M"
            raise CacheError(f"feature set '{name}' in {self.path} has no cached {kind}; extract them with "
                             f"`headstart extract DATA -o {self.path} -b {self.feature_sets.get(name, {}).get('backbone') or name} "
                             f"{option}` (the plain features are kept)")
        x, has = self.load(meta["name"])
        return x.reshape(len(x), int(meta["views"]), int(meta["view_dim"])), has

    def load(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(X float32 (N, D), valid bool (N,)) of one complete, checksum-clean, finite feature set."""
        meta = self.feature_sets.get(name) or self.view_sets.get(name)
        if meta is None:
            have = ", ".join(sorted(self.feature_sets)) or "none"
            raise CacheError(f"feature set '{name}' is not in {self.path} (available: {have}); "
                             f"extract it with `headstart extract DATA -o {self.path} -b {name}`")
        where, n = f"feature set '{name}' in {self.path}", self.n_samples
        if not meta["complete"]:
            raise CacheError(f"{where} is incomplete; rerun `headstart extract` with the same options to finish it")
        if self._file is None:
            raise CacheError(f"{self.path} is closed; open a new FeatureCache to load '{name}'")
        try:
            ds = self._file[FEATURES][name]
            valid = np.asarray(self._file[VALID][name][()], dtype=bool)
            if len(ds.shape) != 2 or ds.shape[0] != n or valid.shape != (n,):
                raise CacheError(f"{where} has shape {ds.shape} for {n} samples; re-extract it with --overwrite")
            x, bad = _read_float32(ds, valid)
        except CacheError:
            raise
        except Exception as exc:  # noqa: BLE001 - fletcher32 mismatch, missing /valid, damaged chunk index
            raise CacheError(f"{where} cannot be read ({one_line(exc)}); its data is damaged, re-extract it with "
                             f"--overwrite") from None
        if bad:
            raise CacheError(f"{where} contains {bad} NaN/Inf values; re-extract with --overwrite")
        return x, valid

    def info(self) -> dict:
        """A JSON-able summary for `headstart cache info`."""
        per_split = Counter(str(s) for s in self.splits)
        per_class: dict[str, dict[str, int]] = {}
        if self.label_matrix is not None:  # multilabel: the positives of each finding
            per_class = {split: {c: int(n) for c, n in zip(self.classes, (self.label_matrix[self.splits == split] == 1)
                                                          .sum(axis=0))} for split in per_split}
        else:
            names = [self.classes[y] if 0 <= y < len(self.classes) else str(y) for y in self.labels]
            for (split, cls), count in Counter(zip(map(str, self.splits), names)).items():
                per_class.setdefault(split, {})[cls] = count
        sets = []
        for name, meta in self.feature_sets.items():
            # sets made before taps, engines and --crop existed: the final layer's default pool, torch, center crop
            extracted, prep = meta.get("weights") != EXTERNAL, meta.get("preprocessing")
            prep = prep if isinstance(prep, dict) else {}
            views, tta = self.views_of(name, "views"), self.views_of(name, "tta")  # extract --views K, --tta M
            derived = {"layer": meta.get("layer", FINAL_LAYER if extracted else None),
                       "pool": meta.get("pool", DEFAULT_POOL if extracted else None),
                       "engine": str(meta["engine"]) if meta.get("engine") else "torch" if extracted else None,
                       "crop": str(prep.get("crop", "center")) if extracted else None,  # extract --crop
                       "n_skipped": meta.get("n_skipped", 0), "views": int(views["views"]) if views else 0,
                       "tta": int(tta["views"]) if tta else 0, "augment": views.get("augment") if views else None}
            sets.append({key: derived[key] if key in derived else meta.get(key) for key in SET_INFO_KEYS})
        return {
            "path": str(self.path), "format_version": self.format_version,
            "size_bytes": self.path.stat().st_size if self.path.exists() else None, "n_samples": self.n_samples,
            "task": self.task, "classes": self.classes, "labels": self.classes if self.task == "multilabel" else None,
            "splits": {s: per_split[s] for s in [*SPLITS, *sorted(set(per_split) - set(SPLITS))] if per_split[s]},
            "splits_by_class": per_class, "feature_sets": sets,
            "view_sets": [{"name": n, "of": m["view_of"], "kind": m.get("view_kind"), "views": m.get("views"),
                           "augment": m.get("augment"), "seed": m.get("view_seed"), "dim": m.get("view_dim"),
                           "dtype": m["dtype"], "complete": m["complete"], "rows": int(m["shape"][0]) - int(
                               m.get("n_skipped", 0)), "fingerprint": m.get("fingerprint"),
                           "seconds": m.get("seconds")} for n, m in self.view_sets.items()],
            "staged": StagingArea(staging_dir(self.path), n_rows=self.n_samples,
                                  manifest_hash=str(self.root_attrs.get("manifest_hash"))).info(),
        }

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "FeatureCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# `cache info --json`: each feature set's keys, in this order
SET_INFO_KEYS = ("name", "backbone", "layer", "pool", "engine", "crop", "engine_version", "weights", "weights_sha256",
                 "dim", "dtype", "complete", "fingerprint", "device", "precision", "seconds", "images_per_second",
                 "n_skipped", "views", "tta", "augment")
# float32 bytes converted (and checked) per slice of rows while loading a set: small, because freed slices stay
# in the allocator's heap (32 MiB slices left 80 MiB there on a 100,000 x 1,024 cache, benchmarks/memory.py)
READ_ROWS_BYTES = 8 << 20


def _read_float32(ds, valid: np.ndarray) -> tuple[np.ndarray, int]:
    """The dataset as one float32 array, filled slice by slice, and its count of NaN/Inf values in valid rows.
    Reading it whole, converting and checking `x[valid]` would hold 2.5 copies; slices keep the peak at one."""
    n, dim = ds.shape
    x = np.empty((n, dim), dtype=np.float32)
    step = max(1, READ_ROWS_BYTES // max(1, 4 * dim))
    bad = 0
    for start in range(0, n, step):
        stop = min(n, start + step)
        if ds.dtype == np.float32:
            ds.read_direct(x, np.s_[start:stop], np.s_[start:stop])
        else:
            x[start:stop] = ds[start:stop]
        if not np.isfinite(x[start:stop]).all():  # rare: only then copy out the valid rows to count
            bad += int((~np.isfinite(x[start:stop][valid[start:stop]])).sum())
    return x, bad


def verify_cache(path: str | Path) -> list[str]:
    """Check a cache end to end; returns the problems found (empty = OK). Never raises for a damaged file."""
    try:
        cache = FeatureCache(path)
    except CacheError as exc:
        return [str(exc)]
    problems: list[str] = []
    with cache:
        try:
            _verify_samples(cache, problems)
            for name in [*cache.feature_sets, *cache.view_sets]:
                _verify_set(cache, name, problems)
        except Exception as exc:  # noqa: BLE001 - damage we did not foresee is still a finding, not a crash
            problems.append(f"{cache.path}: unexpected read failure ({one_line(exc)})")
    return problems


def _verify_samples(cache: FeatureCache, problems: list[str]) -> None:
    if not cache.classes:
        problems.append("root attribute 'classes' is missing or empty")
    problems += [f"/samples: {p}" for p in table_problems(
        ids=cache.ids, labels=cache.labels.tolist(), splits=cache.splits, groups=cache.groups, classes=cache.classes,
        task=cache.task, label_matrix=cache.label_matrix)]
    stored = cache.root_attrs.get("samples_sha256")
    if stored and not problems:
        actual = compute_samples_sha256(ids=cache.ids, labels=cache.labels, splits=cache.splits, groups=cache.groups,
                                        classes=cache.classes)
        if actual != stored:
            problems.append("the sample table does not match its stored checksum (samples_sha256): /samples is damaged")


def _verify_set(cache: FeatureCache, name: str, problems: list[str]) -> None:
    meta, n = cache.feature_sets.get(name) or cache.view_sets[name], cache.n_samples
    where = f"feature set '{name}'"
    ds = cache._file[FEATURES][name]
    if ds.ndim != 2 or ds.shape[0] != n:
        problems.append(f"{where} has shape {ds.shape}, expected ({n}, D)")
        return
    if not meta["complete"]:
        problems.append(f"{where} is incomplete; rerun `headstart extract` with the same options to finish it")
    if not ds.fletcher32:
        logger.warning("%s has no fletcher32 checksums; data damage cannot be detected", where)
    valid = None
    try:
        valid = np.asarray(cache._file[VALID][name][()], dtype=bool)
        if valid.shape != (n,):
            problems.append(f"/valid/{name} has shape {valid.shape}, expected ({n},)")
            valid = None
    except Exception as exc:  # noqa: BLE001
        problems.append(f"/valid/{name} cannot be read ({one_line(exc)})")
    step = ds.chunks[0] if ds.chunks else max(1, n)
    non_finite = 0
    for start in tqdm(range(0, n, step), desc=f"verify {name}", unit="chunk", leave=False, disable=None):
        stop = min(n, start + step)
        try:
            block = ds[start:stop]
        except Exception as exc:  # noqa: BLE001 - fletcher32 mismatch lands here
            problems.append(f"{where}: rows {start}-{stop - 1} fail their checksum ({one_line(exc)}); "
                            f"the data is damaged")
            continue
        rows_ok = valid[start:stop] if valid is not None else slice(None)
        non_finite += int((~np.isfinite(block[rows_ok])).sum())
    if non_finite:
        problems.append(f"{where} contains {non_finite} NaN/Inf values")
    if valid is not None and meta.get("n_skipped") is not None and int(meta["n_skipped"]) != int((~valid).sum()):
        problems.append(f"{where} records {meta['n_skipped']} skipped images but /valid/{name} marks "
                        f"{int((~valid).sum())}")
    try:
        expected = set_fingerprint(meta, cache.root_attrs["manifest_hash"])
    except (KeyError, TypeError, ValueError) as exc:
        problems.append(f"{where} lacks the attributes its fingerprint is computed from ({one_line(exc)})")
        return
    if expected != meta.get("fingerprint"):
        changed = changed_parts(meta)
        what = (f"these parts changed since extraction: {', '.join(changed)}" if changed else
                "the parts match their digests, so the fingerprint attribute itself changed" if
                meta.get("fingerprint_digests") else "no per-part digests were recorded to say which part")
        problems.append(f"{where}: stored fingerprint {str(meta.get('fingerprint'))[:12]}... does not match its "
                        f"attributes ({expected[:12]}...); its metadata is damaged or was edited: {what}")
    elif stored_version(meta) < FINGERPRINT_VERSION:
        added = "; ".join(VERSION_NOTES.get(v, "") for v in range(stored_version(meta) + 1, FINGERPRINT_VERSION + 1))
        problems.append(f"{where} was fingerprinted by an older headstart (fingerprint version {stored_version(meta)}, "
                        f"now {FINGERPRINT_VERSION}, which also hashes {added}); extract will not reuse it: re-extract "
                        f"it with --overwrite")
