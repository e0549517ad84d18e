"""A tiny multi-label feature cache with a known signal, written through the public `write_features`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from headstart.cache import write_features

FINDINGS = ("Atelectasis", "Edema", "Effusion", "Rare")


def multilabel_arrays(n: int = 240, dim: int = 16, *, seed: int = 0, rare_in_train: bool = False):
    """(X, raw codes, splits, groups): finding j is positive when feature j (plus noise) is high; about 10% of
    labels are uncertain (-1) and 5% blank (-2). "Rare" has no positive among the train rows unless asked."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, dim)).astype(np.float32)
    L = len(FINDINGS)
    raw = (X[:, :L] + 0.8 * rng.normal(size=(n, L)) > 0.6).astype(np.int8)
    splits = np.array([("train", "train", "train", "val", "test")[i % 5] for i in range(n)])
    u = rng.random((n, L))
    raw[u < 0.10] = -1
    raw[(u >= 0.10) & (u < 0.15)] = -2
    if not rare_in_train:
        raw[splits == "train", L - 1] = np.where(raw[splits == "train", L - 1] == 1, 0, raw[splits == "train", L - 1])
    groups = np.array([f"p{i // 2}" for i in range(n)])
    return X, raw, splits, groups


def make_multilabel_cache(path: Path, *, n: int = 240, dim: int = 16, seed: int = 0,
                          rare_in_train: bool = False) -> Path:
    X, raw, splits, groups = multilabel_arrays(n, dim, seed=seed, rare_in_train=rare_in_train)
    write_features(path, features={"feat": X}, labels=raw, ids=[f"img/{i:04d}.png" for i in range(n)],
                   splits=list(splits), classes=list(FINDINGS), groups=list(groups))
    return path
