"""`write_features`: a headstart cache from features computed elsewhere, e.g. a foundation model's embeddings.

The features go through the same request, stager and publisher as an extraction, so the result is an ordinary
cache that `heads`, `cache info`, `cache verify` and `open_cache` accept. What computed the features is outside
headstart's knowledge, so each set's identity (its fingerprint) is its content: the sha256 of the array stands in
for the weights hash. Writing different features under an existing name is refused unless `overwrite=True`, and
writing the same features again changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from headstart.cache.fingerprint import compute_fingerprint, compute_samples_sha256
from headstart.cache.plan import FeatureSetSpec, SamplesTable, table_problems
from headstart.cache.schema import CHUNK_BYTES, EXTERNAL, FEATURE_DTYPES
from headstart.cache.writer import CacheWriter
from headstart.data.labelcodes import codes_from_array
from headstart.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


def write_features(path: str | Path, *, features: Mapping[str, np.ndarray], labels: Sequence, ids: Sequence[str],
                   splits: Sequence[str], classes: Sequence[str], groups: Sequence[str] | None = None,
                   valid: Sequence[bool] | None = None, backbones: Mapping[str, str] | None = None,
                   source: Mapping | None = None, seconds: float | None = None, dtype: str = "float16",
                   overwrite: bool = False) -> Path:
    """Write (or add to) the cache at `path` from feature arrays made elsewhere; returns `path`.

    - `features`: set name -> (N, D) array, one row per sample, in the order of `ids`.
    - `labels`: N class indices into `classes`, or N class names; or an (N, L >= 2) multi-label array, one column
      per name in `classes`, of 1 / 0 / -1 (uncertain) / NaN or -2 (blank), stored raw (task `multilabel`).
    - `ids`: N unique sample ids (e.g. file names); `splits`: N of "train", "val", "test".
    - `groups`: N patient ids (default: none known), used where heads cross-validate.
    - `valid`: N booleans, False for rows without features (stored as skipped, dropped by heads).
    - `backbones`: set name -> what computed it, shown in records and reports (default: the set name).
    - `source`: JSON-able notes stored with each set (e.g. {"model": "CXR Foundation", "file": "emb.npz"}).
    - `seconds`: how long computing the features took, if known; reports use it as the extraction cost (else 0).
    Adding a set to an existing cache needs the same ids, labels, splits and groups. Bad input raises DataError
    or ConfigError in one line.
    """
    table = _table(ids=ids, labels=labels, splits=splits, classes=classes, groups=groups)
    n = len(table)
    arrays = {str(name): _matrix(name, x, n) for name, x in features.items()}
    if not arrays:
        raise ConfigError("no features given; pass features={'name': X} with X of shape (N, D)")
    if dtype not in FEATURE_DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not supported; expected one of {', '.join(FEATURE_DTYPES)}")
    keep = np.ones(n, dtype=bool) if valid is None else np.asarray(valid)
    if keep.shape != (n,) or keep.dtype.kind != "b":
        raise DataError(f"valid is {keep.dtype} of shape {keep.shape}; expected {n} booleans, one per id")
    stored = {name: _stored(name, x, keep, dtype) for name, x in arrays.items()}
    notes = dict(source or {})
    try:
        json.dumps(notes, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"source notes cannot be stored ({exc}); expected a JSON-able dict of strings and "
                          "numbers") from None
    specs = [_spec(name, x, table=table, backbone=(backbones or {}).get(name, name), notes=notes)
             for name, x in stored.items()]
    stats = {s.name: {"device": EXTERNAL, "seconds": float(seconds or 0.0),
                      "images_per_second": n / seconds if seconds else 0.0} for s in specs}
    with CacheWriter(path, table, specs, overwrite=overwrite) as writer:
        todo = writer.todo
        if todo:
            step = max(1, CHUNK_BYTES * 16 // max(1, 4 * sum(stored[t].shape[1] for t in todo)))  # ~16 MiB batches
            for start in range(0, n, step):
                rows = np.arange(start, min(n, start + step))
                writer.write_batch(rows, {t: stored[t][rows] for t in todo}, keep[rows])
        writer.finish(stats=stats, skipped=[table.ids[i] for i in np.flatnonzero(~keep)])
    done = [s.name for s in specs if s.name not in todo]
    if done:
        logger.info("%s already holds the same features for %s; left unchanged", path, ", ".join(done))
    return Path(path)


def _table(*, ids, labels, splits, classes, groups) -> SamplesTable:
    ids = [str(i) for i in ids]
    n = len(ids)
    if n == 0:
        raise DataError("no samples given; expected N ids with N labels, splits and feature rows")
    classes = [str(c) for c in classes]
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise DataError(f"classes are {classes}; expected at least two distinct class names")
    groups = [""] * n if groups is None else ["" if g is None else str(g) for g in groups]
    splits = [str(s) for s in splits]
    matrix = np.asarray(labels)
    if matrix.ndim == 2 and matrix.shape[1] >= 2:
        if matrix.shape[1] != len(classes):
            raise DataError(f"labels have {matrix.shape[1]} columns but classes names {len(classes)}; expected one "
                            "name per label column")
        raw = codes_from_array(matrix, where="labels", names=classes)
        label_index, task = [-1] * n, "multilabel"
    else:
        raw, label_index = None, _label_indices(labels, classes)
        task = "binary" if len(classes) == 2 else "multiclass"
    problems = table_problems(ids=ids, labels=label_index if raw is None else raw, splits=splits, groups=groups,
                              classes=classes, task=task, label_matrix=raw)
    if problems:
        raise DataError(problems[0])
    manifest = compute_samples_sha256(ids=ids, labels=label_index, splits=splits, groups=groups, classes=classes)
    if raw is not None:  # the raw codes are part of what the features were written for
        manifest = hashlib.sha256((manifest + "\n").encode() + raw.tobytes()).hexdigest()
    return SamplesTable(ids=ids, labels=label_index, splits=splits, groups=groups, classes=classes,
                        manifest_hash=manifest, task=task, label_matrix=raw,
                        attrs={"source": {"kind": EXTERNAL, "written_by": "headstart.cache.write_features"}})


def _label_indices(labels: Sequence, classes: list[str]) -> list[int]:
    """Class names or class indices -> indices into `classes` (their range is checked with the table's)."""
    values = np.asarray(labels)
    if values.dtype.kind in "iu" or (values.dtype.kind == "f" and np.all(np.mod(values, 1) == 0)):
        return values.astype(np.int64).tolist()
    position = {name: i for i, name in enumerate(classes)}
    unknown = sorted({str(v) for v in values.tolist()} - set(position))
    if unknown:
        raise DataError(f"labels {unknown[:5]} are not in classes {classes}; expected class names or indices")
    return [position[str(v)] for v in values.tolist()]


def _matrix(name: str, x, n: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "iuf" or arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] < 1:
        raise DataError(f"features '{name}' are {arr.dtype} of shape {arr.shape}; expected numbers of shape "
                        f"({n}, D), one row per id")
    return arr


def _stored(name: str, x: np.ndarray, keep: np.ndarray, dtype: str) -> np.ndarray:
    """`x` exactly as the cache will hold it: `dtype`, rows without features zeroed; refuses NaN/Inf and overflow."""
    bad = int((~np.isfinite(x[keep])).any(axis=1).sum()) if x.dtype.kind == "f" else 0
    if bad:
        raise DataError(f"features '{name}' have {bad} rows with NaN/Inf; pass valid= with False for those rows "
                        f"to store them as skipped, or fix them")
    with np.errstate(over="ignore", invalid="ignore"):
        out = x.astype(dtype)
    out[~keep] = 0
    overflow = int((~np.isfinite(out)).any(axis=1).sum())
    if overflow:
        raise DataError(f"features '{name}' exceed the {dtype} range in {overflow} rows; pass dtype='float32'")
    return out


def _spec(name: str, x: np.ndarray, *, table: SamplesTable, backbone: str, notes: dict) -> FeatureSetSpec:
    # The content is the identity: hash exactly what will be stored, so equal input gives an equal fingerprint.
    content = hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()
    prep = {EXTERNAL: notes}  # stands where image preprocessing is recorded for extracted sets
    return FeatureSetSpec(name=name, backbone=str(backbone), weights_tag=EXTERNAL, weights_sha256=content,
                          preprocessing=prep, dim=int(x.shape[1]), dtype=str(x.dtype),
                          fingerprint=compute_fingerprint(backbone=str(backbone), weights_tag=EXTERNAL,
                                                          weights_sha256=content, preprocessing=prep,
                                                          manifest_hash=table.manifest_hash))
