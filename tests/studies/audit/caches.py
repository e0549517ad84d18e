"""Test caches for the audit: phantoms extracted with random weights (`extract` records `/samples/meta`), and
caches as made before metadata existed (the group deleted)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from headstart.data.synthetic import make_phantom_dataset
from headstart.extract.config import ExtractConfig
from headstart.extract.runner import run_extract


def extract(data: Path, out: Path, *, image_size: int = 32) -> Path:
    config = ExtractConfig(backbones=["resnet18"], weights="random", image_size=image_size, batch_size=32, workers=0)
    run_extract(data=str(data), output=str(out), config=config)
    return out


def drop_meta(cache: Path) -> Path:
    """Make `cache` look like one extracted before headstart recorded metadata."""
    with h5py.File(cache, "a") as f:
        del f["samples/meta"]
    return cache


def plant_copies(data: Path, names: list[Path], *, quality: int = 75, scale: float = 0.9) -> list[tuple[str, str]]:
    """Re-encode each train image at `quality` and `scale` into test/<class>/copy-<name>; returns (orig, copy) ids."""
    planted = []
    for src in names:
        img = Image.open(src).convert("L")
        w, h = img.size
        img = img.resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR)
        dst = data / "test" / src.parent.name / f"copy-{src.name}"
        img.save(dst, "JPEG", quality=quality)
        planted.append((str(src.relative_to(data)), str(dst.relative_to(data))))
    return planted


def resave_class(data: Path, cls: str, *, size: int) -> None:
    """Re-save every image of class `cls` (every split) at `size` px: a size shortcut."""
    for path in sorted(data.glob(f"*/{cls}/*.jpeg")):
        img = Image.open(path)
        img.resize((size, size), Image.Resampling.BILINEAR).save(path, "JPEG", quality=90)


def shortcut_dataset(root: Path, *, n_copies: int = 10, seed: int = 3) -> tuple[Path, list[tuple[str, str]]]:
    """Phantoms where PNEUMONIA is stored at 80 px and NORMAL at 64 px, plus `n_copies` train images re-encoded
    (q75, 90% size) into test."""
    data = make_phantom_dataset(root, n_train=120, n_test=40, image_size=64, seed=seed)
    resave_class(data, "PNEUMONIA", size=80)
    rng = np.random.default_rng(seed)
    train = sorted(data.glob("train/*/*.jpeg"))
    chosen = [train[i] for i in rng.choice(len(train), n_copies, replace=False)]
    return data, plant_copies(data, chosen)


def table_cache(path: Path, *, labels: list[int], splits: list[str], groups: list[str] | None = None,
                dim: int = 8, attrs: dict | None = None) -> Path:
    """A cache with random features for an arbitrary sample table (one-class splits, a single split, ...)."""
    from headstart.cache import SamplesTable, compute_samples_sha256
    from tests.cache.synthetic import extract as drive_writer, make_spec

    n = len(labels)
    ids = [f"img/{i:04d}.png" for i in range(n)]
    groups = groups if groups is not None else [""] * n
    classes = ["NORMAL", "PNEUMONIA"]
    manifest = compute_samples_sha256(ids=ids, labels=labels, splits=splits, groups=groups, classes=classes)
    table = SamplesTable(ids=ids, labels=list(labels), splits=list(splits), groups=list(groups), classes=classes,
                         manifest_hash=manifest, attrs=attrs or {"source": {"kind": "manifest"}})
    drive_writer(path, table, [make_spec(table, dim=dim)])
    return path
