"""Successive halving inside a batched sweep: at a few rung epochs, the worse half of the heads still training
stops, so most of the sweep's FLOPs go to the configurations that can still win.

On real features the torch heads rarely stop early on their own: every config of a default MLP sweep ran all
40 epochs on the Kaggle cache (issue 13), and the configs that lose cost as much as the one that wins. The rule
is a pure function of the val losses, so it is as deterministic as the training itself (the seed fixes the
init, minibatch order and dropout noise, hence the losses, hence who stops).
"""

from __future__ import annotations

import math

import numpy as np


def halving_survivors(best_loss: np.ndarray, training: np.ndarray, *, keep: float = 0.5) -> np.ndarray:
    """Which heads keep training after a rung: of the heads where `training` is True, the `ceil(keep * n)` with
    the lowest best-so-far val loss (the loss of the weights each would keep). Ties go to the earlier head
    (a stable sort), so the outcome never depends on float noise in the order. Heads not training stay stopped.
    """
    best_loss = np.asarray(best_loss, dtype=np.float64)
    candidates = np.flatnonzero(np.asarray(training, dtype=bool))
    survivors = np.zeros(len(best_loss), dtype=bool)
    if len(candidates) == 0:
        return survivors
    n_keep = max(1, math.ceil(keep * len(candidates)))
    ranked = candidates[np.argsort(best_loss[candidates], kind="stable")]
    survivors[ranked[:n_keep]] = True
    return survivors
