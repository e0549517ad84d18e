"""Read-only access to a cache file, and `verify_cache`, which checks it end to end.

Every failure to open or read becomes a one-line CacheError that names the file and says what to do; metadata
is parsed as JSON only. Files are opened without HDF5 file locking: writers never modify a published file in
place (they rename a new one over it), so readers need no lock and never block a writer.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from headstart.cache.fingerprint import compute_fingerprint, compute_samples_sha256
from headstart.cache.schema import (
    FEATURE_JSON_ATTRS,
    FEATURES,
    FORMAT_NAME,
    FORMAT_VERSION,
    ROOT_PLAIN_ATTRS,
    SAMPLE_FIELDS,
    SAMPLES,
    VALID,
    staging_dir,
)
from headstart.cache.staging import StagingArea
from headstart.data.types import SPLITS
from headstart.errors import CacheError, one_line

logger = logging.getLogger(__name__)

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _error(kind: str, message: str) -> CacheError:
    """A CacheError tagged with why opening failed, so the writer can decide whether --overwrite may replace it."""
    exc = CacheError(message)
    exc.kind = kind  # type: ignore[attr-defined]
    return exc


def _open_h5(path: Path) -> h5py.File:
    if not path.exists():
        if staging_dir(path).is_dir():
            raise _error("missing", f"cache {path} does not exist yet: an extraction into it is in progress or was "
                                    f"interrupted ({staging_dir(path)}); wait for it, or rerun the same command")
        raise _error("missing", f"cache {path} does not exist; create it with `headstart extract DATA -o {path}`")
    if path.is_dir():
        raise _error("folder", f"{path} is a folder; expected a cache file made by `headstart extract`")
    try:
        with open(path, "rb") as f:
            head = f.read(len(HDF5_SIGNATURE))
    except OSError as exc:
        raise _error("damaged", f"cannot read {path} ({exc.strerror or exc})") from None
    if not head:
        raise _error("damaged", f"{path} is empty (0 bytes), probably from an interrupted copy; re-extract it")
    if head != HDF5_SIGNATURE and not h5py.is_hdf5(str(path)):
        raise _error("not-hdf5",
                     f"{path} is not an HDF5 file; expected a headstart feature cache made by `headstart extract`")
    try:
        return h5py.File(path, "r", locking=False)
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError, KeyError or RuntimeError on damaged files
        raise _error(
            "damaged",
            f"{path} is truncated or damaged and cannot be opened ({one_line(exc)}); re-extract it with --overwrite",
        ) from None




def _attr(value):
    """h5py attribute -> plain Python (bytes -> str, numpy scalars -> Python scalars)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _json(value, what: str):
    try:
        return json.loads(_attr(value))
    except (TypeError, ValueError):
        raise CacheError(
            f"{what} is not valid JSON; the cache metadata is damaged, re-extract with --overwrite"
        ) from None


def _strings(ds) -> np.ndarray:
    return np.array([s.decode("utf-8", "replace") if isinstance(s, bytes) else str(s) for s in ds[()]], dtype=object)


class FeatureCache:
    """A read-only view of one cache file: the sample table eagerly, feature sets on `load`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = _open_h5(self.path)
        try:
            self._read_header()
        except CacheError:
            self.close()
            raise
        except Exception as exc:  # noqa: BLE001 - damaged metadata surfaces as any h5py/numpy error
            self.close()
            raise _error("damaged", f"{self.path} is damaged: {one_line(exc)}; re-extract it with --overwrite") from None

    def _read_header(self) -> None:
        f, path = self._file, self.path
        attrs = {k: _attr(v) for k, v in f.attrs.items()}
        if attrs.get("format") != FORMAT_NAME:
            raise _error("foreign", f"{path} is an HDF5 file but not a headstart cache (no format='{FORMAT_NAME}' "
                                    f"attribute); expected a file made by `headstart extract`")
        version = attrs.get("format_version")
        if not isinstance(version, int):
            raise _error("damaged", f"{path} has no valid format_version; re-extract it with --overwrite")
        if version > FORMAT_VERSION:
            raise _error("newer", f"{path} was made by a newer headstart (format {version}, this one reads up to "
                                  f"{FORMAT_VERSION}); upgrade headstart")
        for group in (SAMPLES, FEATURES, VALID):
            if group not in f:
                raise _error("damaged", f"{path} has no /{group} group; it is damaged, re-extract it with --overwrite")
        for key in SAMPLE_FIELDS:
            if key not in f[SAMPLES]:
                raise _error("damaged",
                             f"{path} has no /{SAMPLES}/{key}; it is damaged, re-extract it with --overwrite")
        self.root_attrs = {k: (v if k in ROOT_PLAIN_ATTRS else _json(v, f"root attribute {k!r} of {path}"))
                           for k, v in attrs.items()}
        self.format_version: int = version
        self.classes: list[str] = list(self.root_attrs.get("classes", []))
        samples = f[SAMPLES]
        self.ids = _strings(samples["id"])
        self.labels = np.asarray(samples["label"][()], dtype=np.int64)
        self.splits = _strings(samples["split"])
        self.groups = _strings(samples["group"])
        self.feature_sets: dict[str, dict] = {}
        for name, ds in f[FEATURES].items():
            meta = {k: (_json(v, f"attribute {k!r} of feature set '{name}' in {path}") if k in FEATURE_JSON_ATTRS
                        else _attr(v)) for k, v in ds.attrs.items()}
            meta.update(name=name, dim=int(ds.shape[1]) if ds.ndim == 2 else 0, dtype=str(ds.dtype),
                        complete=bool(meta.get("complete", False)), shape=tuple(ds.shape))
            self.feature_sets[name] = meta

    @property
    def n_samples(self) -> int:
        return len(self.ids)

    # ------------------------------------------------------------------------------------------------------
    def load(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(X float32 (N, D), valid bool (N,)) of one complete, checksum-clean, finite feature set."""
        meta = self.feature_sets.get(name)
        if meta is None:
            have = ", ".join(sorted(self.feature_sets)) or "none"
            raise CacheError(f"feature set '{name}' is not in {self.path} (available: {have}); "
                             f"extract it with `headstart extract DATA -o {self.path} -b {name}`")
        if not meta["complete"]:
            raise CacheError(f"feature set '{name}' in {self.path} is incomplete; rerun `headstart extract` with the "
                             f"same options to finish it")
        if self._file is None:
            raise CacheError(f"{self.path} is closed; open a new FeatureCache to load '{name}'")
        try:
            x = np.asarray(self._file[FEATURES][name][()], dtype=np.float32)
            valid = np.asarray(self._file[VALID][name][()], dtype=bool)
        except Exception as exc:  # noqa: BLE001 - fletcher32 mismatch, missing /valid, damaged chunk index
            raise CacheError(f"feature set '{name}' in {self.path} cannot be read ({one_line(exc)}); its data is "
                             f"damaged, re-extract it with --overwrite") from None
        n = self.n_samples
        if x.ndim != 2 or x.shape[0] != n or valid.shape != (n,):
            raise CacheError(f"feature set '{name}' in {self.path} has shape {x.shape} for {n} samples; re-extract "
                             f"it with --overwrite")
        bad = int((~np.isfinite(x[valid])).sum())
        if bad:
            raise CacheError(f"feature set '{name}' in {self.path} contains {bad} NaN/Inf values; "
                             f"re-extract with --overwrite")
        return x, valid

    def info(self) -> dict:
        """A JSON-able summary for `headstart cache info`."""
        per_split = Counter(str(s) for s in self.splits)
        per_class: dict[str, dict[str, int]] = {}
        for split, label in zip(self.splits, self.labels):
            cls = self.classes[label] if 0 <= label < len(self.classes) else str(label)
            per_class.setdefault(str(split), {}).setdefault(cls, 0)
            per_class[str(split)][cls] += 1
        sets = []
        for name, meta in self.feature_sets.items():
            sets.append({
                "name": name, "backbone": meta.get("backbone"), "weights": meta.get("weights"),
                "weights_sha256": meta.get("weights_sha256"), "dim": meta["dim"], "dtype": meta["dtype"],
                "complete": meta["complete"], "fingerprint": meta.get("fingerprint"), "device": meta.get("device"),
                "precision": meta.get("precision"), "seconds": meta.get("seconds"),
                "images_per_second": meta.get("images_per_second"), "n_skipped": meta.get("n_skipped", 0),
            })
        return {
            "path": str(self.path),
            "format_version": self.format_version,
            "size_bytes": self.path.stat().st_size if self.path.exists() else None,
            "n_samples": self.n_samples,
            "classes": self.classes,
            "splits": {s: per_split[s] for s in [*SPLITS, *sorted(set(per_split) - set(SPLITS))] if per_split[s]},
            "splits_by_class": per_class,
            "feature_sets": sets,
            "staged": staged_info(self.path, n_rows=self.n_samples,
                                  manifest_hash=str(self.root_attrs.get("manifest_hash"))),
        }

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "FeatureCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def staged_info(path: str | Path, *, n_rows: int, manifest_hash: str) -> dict | None:
    """What an in-progress (or interrupted) extraction into `path` has staged, or None."""
    staging = StagingArea(staging_dir(path), n_rows=n_rows, manifest_hash=manifest_hash)
    if not staging.folder.is_dir():
        return None
    state = staging.read_state()
    return {
        "folder": str(staging.folder),
        "sets": sorted(state["sets"]) if state else [],
        "same_samples": staging.compatible(state),
        "rows_staged": staging.staged_rows() if staging.compatible(state) else None,
    }


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
            for name in cache.feature_sets:
                _verify_set(cache, name, problems)
        except Exception as exc:  # noqa: BLE001 - damage we did not foresee is still a finding, not a crash
            problems.append(f"{cache.path}: unexpected read failure ({one_line(exc)})")
    return problems


def _verify_samples(cache: FeatureCache, problems: list[str]) -> None:
    n = cache.n_samples
    for name, arr in (("label", cache.labels), ("split", cache.splits), ("group", cache.groups)):
        if len(arr) != n:
            problems.append(f"/samples/{name} has {len(arr)} rows, /samples/id has {n}")
    if len(set(cache.ids.tolist())) != n:
        problems.append(f"/samples/id holds {n - len(set(cache.ids.tolist()))} repeated ids")
    if not cache.classes:
        problems.append("root attribute 'classes' is missing or empty")
    if len(cache.labels) and (cache.labels.min() < 0 or cache.labels.max() >= len(cache.classes)):
        problems.append(f"labels outside 0..{len(cache.classes) - 1} (classes {cache.classes})")
    bad_splits = sorted(set(cache.splits.tolist()) - set(SPLITS))
    if bad_splits:
        problems.append(f"unknown split names {bad_splits}; expected {list(SPLITS)}")
    stored = cache.root_attrs.get("samples_sha256")
    if stored and not problems:
        actual = compute_samples_sha256(ids=cache.ids, labels=cache.labels, splits=cache.splits, groups=cache.groups,
                                        classes=cache.classes)
        if actual != stored:
            problems.append("the sample table does not match its stored checksum (samples_sha256): /samples is damaged")


def _verify_set(cache: FeatureCache, name: str, problems: list[str]) -> None:
    meta, n = cache.feature_sets[name], cache.n_samples
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
        v = cache._file[VALID][name]
        valid = np.asarray(v[()], dtype=bool)
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
        expected = compute_fingerprint(
            backbone=meta["backbone"], weights_tag=meta["weights"], weights_sha256=meta["weights_sha256"],
            preprocessing=meta["preprocessing"], manifest_hash=cache.root_attrs["manifest_hash"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        problems.append(f"{where} lacks the attributes its fingerprint is computed from ({one_line(exc)})")
        return
    if expected != meta.get("fingerprint"):
        problems.append(f"{where}: stored fingerprint {str(meta.get('fingerprint'))[:12]}... does not match its "
                        f"attributes ({expected[:12]}...); its metadata is damaged or was edited")
