"""Synthetic sample tables and feature sets for cache tests (no torch, no images)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from headstart.cache import CacheWriter, FeatureSetSpec, SamplesTable, compute_fingerprint, compute_samples_sha256

N = 37  # odd, so batches do not divide it evenly
PREPROCESSING = {"input_size": 32, "resize_size": 36, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
                 "interpolation": "bilinear"}


def make_table(n: int = N, *, seed: int = 0) -> SamplesTable:
    rng = np.random.default_rng(seed)
    ids = [f"img/{i:03d}.png" for i in range(n)]
    labels = [int(v) for v in rng.integers(0, 2, n)]
    splits = [("train", "val", "test")[i % 3] for i in range(n)]
    groups = [f"p{i // 2}" if i % 5 else "" for i in range(n)]
    classes = ["NORMAL", "PNEUMONIA"]
    manifest = compute_samples_sha256(ids=ids, labels=labels, splits=splits, groups=groups, classes=classes)
    return SamplesTable(ids=ids, labels=labels, splits=splits, groups=groups, classes=classes, manifest_hash=manifest,
                        attrs={"source": {"root": "/data", "kind": "folder"}, "split_config": {"seed": 0}})


def make_spec(table: SamplesTable, name: str = "resnet18", *, dim: int = 8, weights: str = "random",
              dtype: str = "float16", backbone: str | None = None) -> FeatureSetSpec:
    backbone = backbone or name
    fp = compute_fingerprint(backbone=backbone, weights_tag=weights, weights_sha256="", preprocessing=PREPROCESSING,
                             manifest_hash=table.manifest_hash)
    return FeatureSetSpec(name=name, backbone=backbone, weights_tag=weights, weights_sha256="",
                          preprocessing=PREPROCESSING, dim=dim, fingerprint=fp, dtype=dtype)


def features_for(spec: FeatureSetSpec, n: int = N) -> np.ndarray:
    """Deterministic features per set name, so a resumed run can be compared with an uninterrupted one."""
    seed = int(hashlib.sha256(spec.fingerprint.encode()).hexdigest()[:8], 16)
    return np.random.default_rng(seed).normal(size=(n, spec.dim)).astype(np.float32)


def stats_for(specs) -> dict:
    return {s.name: {"device": "cpu", "seconds": 1.5, "images_per_second": 24.7, "precision": "fp32",
                     "batch_size": 8, "loop_seconds": 2.0, "versions": {"torch": "test"}} for s in specs}


def extract(path: Path, table: SamplesTable, specs, *, batch: int = 8, overwrite: bool = False,
            invalid: set[int] = frozenset(), stop_after: int | None = None, finish: bool = True) -> CacheWriter:
    """Drive a CacheWriter the way the extraction loop does; `stop_after` batches simulates a crash."""
    full = {s.name: features_for(s, len(table)) for s in specs}
    with CacheWriter(path, table, specs, overwrite=overwrite) as writer:
        todo_rows = np.flatnonzero(~writer.done_mask())
        for i, start in enumerate(range(0, len(todo_rows), batch)):
            if stop_after is not None and i >= stop_after:
                return writer
            rows = todo_rows[start:start + batch]
            valid = np.array([r not in invalid for r in rows])
            writer.write_batch(rows, {n: full[n][rows] for n in writer.todo}, valid)
        if finish:
            writer.finish(stats=stats_for(specs), skipped=[table.ids[i] for i in sorted(invalid)])
    return writer


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


