"""Class weights for imbalanced data (Kaggle CXR is about 1 : 2.9), shared by every trained head and fine-tune."""

from __future__ import annotations

import numpy as np

from headstart.errors import ConfigError


def class_weights(y: np.ndarray, n_classes: int, mode: str | None) -> np.ndarray:
    """sklearn's "balanced" rule, n / (C * count_c), over the classes present; absent classes get 0.

    `mode` is "balanced", or None / "none" for uniform weights. One definition, so a cached head, kNN's votes
    and a fine-tune weight the same data identically.
    """
    if mode is None or mode == "none":
        return np.ones(n_classes, dtype=np.float32)
    if mode != "balanced":
        raise ConfigError(f"class_weight {mode!r} is not valid; expected 'balanced' or None")
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(n_classes)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return w.astype(np.float32)
