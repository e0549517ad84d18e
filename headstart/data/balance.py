"""Class weights for imbalanced data (Kaggle CXR is about 1 : 2.9), shared by every trained head and fine-tune.

numpy is imported inside `class_weights`, so the CLI can offer CLASS_WEIGHTS as choices without loading it.
"""

from __future__ import annotations

from headstart.errors import ConfigError

# The class-weight options every command and config accepts: "balanced" reweights by inverse class frequency,
# "none" weights every class 1 (configs and records keep the word; the estimators receive None).
CLASS_WEIGHTS = ("balanced", "none")


def class_weight_mode(name: str | None) -> str | None:
    """An option value -> what the estimators take: "balanced" stays, "none" (or None) becomes None, as in
    scikit-learn's `class_weight`; anything else is refused."""
    if name is None or name == "none":
        return None
    if name != "balanced":
        raise ConfigError(f"class weight {name!r} is not valid; expected one of {', '.join(CLASS_WEIGHTS)}")
    return name


def class_weights(y, n_classes: int, mode: str | None):
    """sklearn's "balanced" rule, n / (C * count_c), over the classes present; absent classes get 0.

    `mode` is "balanced", or None / "none" for uniform weights. One definition, so a cached head, kNN's votes
    and a fine-tune weight the same data identically. Returns a float32 array of length `n_classes`.
    """
    import numpy as np

    if class_weight_mode(mode) is None:
        return np.ones(n_classes, dtype=np.float32)
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(n_classes)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return w.astype(np.float32)


def pos_weights(y, mask, mode: str | None):
    """Multi-label `--class-weight balanced`: per finding, BCE's `pos_weight` = known negatives / known positives
    (1 where a finding lacks either, or for uniform weights). One definition for cached heads and fine-tunes.

    `y` (N, L) 0/1, `mask` (N, L) True where the label is known (None: all known). Returns float32 (L,).
    """
    import numpy as np

    y = np.asarray(y)
    known = np.ones(y.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if class_weight_mode(mode) is None:
        return np.ones(y.shape[1], dtype=np.float32)
    pos = ((y == 1) & known).sum(axis=0).astype(np.float64)
    neg = known.sum(axis=0) - pos
    return np.where((pos > 0) & (neg > 0), neg / np.maximum(pos, 1), 1.0).astype(np.float32)
