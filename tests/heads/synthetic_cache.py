"""Tiny feature caches with a known signal, written through the real CacheWriter (no images, no torch)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from headstart.cache import CacheWriter, FeatureSetSpec, SamplesTable, compute_fingerprint, compute_samples_sha256

PREPROCESSING = {"input_size": 32, "resize_size": 36, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
                 "interpolation": "bilinear"}


def separable(n: int, dim: int, n_classes: int = 2, *, seed: int = 0, shift: float = 1.5):
    """Gaussian blobs: class c is shifted by `shift` along feature c, so heads have something to learn."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    X = rng.normal(size=(n, dim)).astype(np.float32)
    X[np.arange(n), y % dim] += shift
    return X, y


def make_cache(path: Path, *, n: int = 180, dim: int = 12, n_classes: int = 2, sets=("resnet18",),
               split_cycle=("train", "train", "train", "val", "test"), test_label: int | None = None,
               invalid: frozenset[int] = frozenset(), seed: int = 0) -> Path:
    """Write a cache whose rows cycle through `split_cycle`; `test_label` forces every test row to one class."""
    X, y = separable(n, dim, n_classes, seed=seed, shift=2.5)
    splits = [split_cycle[i % len(split_cycle)] for i in range(n)]
    if test_label is not None:
        y = np.array([test_label if s == "test" else v for v, s in zip(y, splits)])
    ids = [f"img/{i:04d}.png" for i in range(n)]
    groups = [f"p{i // 2}" for i in range(n)]
    classes = [f"class{c}" for c in range(n_classes)]
    labels = [int(v) for v in y]
    manifest = compute_samples_sha256(ids=ids, labels=labels, splits=splits, groups=groups, classes=classes)
    table = SamplesTable(ids=ids, labels=labels, splits=splits, groups=groups, classes=classes, manifest_hash=manifest,
                         attrs={"source": {"root": "/synthetic", "kind": "test"}})
    specs = []
    for name in sets:
        fp = compute_fingerprint(backbone=name, weights_tag="random", weights_sha256="", preprocessing=PREPROCESSING,
                                 manifest_hash=manifest)
        specs.append(FeatureSetSpec(name=name, backbone=name, weights_tag="random", weights_sha256="",
                                    preprocessing=PREPROCESSING, dim=dim, fingerprint=fp))
    with CacheWriter(path, table, specs) as writer:
        rows = np.arange(n)
        valid = np.array([r not in invalid for r in rows])
        writer.write_batch(rows, {s.name: X for s in specs}, valid)
        writer.finish(stats={s.name: {"device": "cpu", "seconds": 12.5, "images_per_second": 14.4} for s in specs},
                      skipped=[ids[i] for i in sorted(invalid)])
    return path


def corrupt(path: Path, name: str, *, nan: bool = False, incomplete: bool = False) -> None:
    """Damage a published cache the way a bad backbone or an interrupted run would look to a reader."""
    with h5py.File(path, "r+") as f:
        ds = f["features"][name]
        if nan:
            ds[0, 0] = np.nan
        if incomplete:
            ds.attrs["complete"] = False
