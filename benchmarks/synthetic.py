"""A synthetic feature cache written through headstart's own cache writer, batch by batch (bounded memory).

Shared by benchmarks/startup.py and benchmarks/memory.py: Kaggle-like classes (about 1 : 2.9), 70/10/20
train/val/test, Gaussian features with a class signal along one random direction, stored float16.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from headstart.cache import CacheWriter, FeatureSetSpec, SamplesTable, compute_fingerprint, compute_samples_sha256

SET_NAME = "synthetic"
PREPROCESSING = {"input_size": 224, "resize_size": 256, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                 "interpolation": "bilinear"}


def write_cache(path: Path, *, rows: int, dim: int, seed: int = 0, batch_rows: int = 10_000) -> Path:
    """Write a `rows` x `dim` float16 cache at `path` with the project's CacheWriter (staged, then published)."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(rows) < 3875 / 5216).astype(np.int64)
    splits = rng.choice(["train", "val", "test"], size=rows, p=[0.7, 0.1, 0.2]).tolist()
    ids = [f"synthetic/{i:06d}.jpeg" for i in range(rows)]
    groups = [""] * rows
    classes = ["NORMAL", "PNEUMONIA"]
    manifest = compute_samples_sha256(ids=ids, labels=labels.tolist(), splits=splits, groups=groups, classes=classes)
    table = SamplesTable(ids=ids, labels=labels.tolist(), splits=splits, groups=groups, classes=classes,
                         manifest_hash=manifest, attrs={"source": {"root": "synthetic", "kind": "benchmark"}})
    fingerprint = compute_fingerprint(backbone=SET_NAME, weights_tag="random", weights_sha256="",
                                      preprocessing=PREPROCESSING, manifest_hash=manifest)
    spec = FeatureSetSpec(name=SET_NAME, backbone=SET_NAME, weights_tag="random", weights_sha256="",
                          preprocessing=PREPROCESSING, dim=dim, fingerprint=fingerprint, dtype="float16")
    direction = rng.normal(size=dim).astype(np.float32) / np.sqrt(dim) * 3.0
    with CacheWriter(path, table, [spec]) as writer:
        for start in range(0, rows, batch_rows):
            stop = min(rows, start + batch_rows)
            x = rng.standard_normal((stop - start, dim), dtype=np.float32)
            x += labels[start:stop, None].astype(np.float32) * direction
            writer.write_batch(np.arange(start, stop), {SET_NAME: x}, np.ones(stop - start, dtype=bool))
        writer.finish(stats={SET_NAME: {"device": "synthetic", "seconds": 0.0, "images_per_second": 0.0}}, skipped=[])
    return path
