"""Feature standardisation without whole-matrix temporaries.

`np.std(X, dtype=float64)` builds a float64 copy of X - mean (two float32 copies), and sklearn's
`StandardScaler.fit` peaks at 2.25 copies; on issue 13's 100,000 x 1,024 cache either one alone broke the
"at most two copies of the feature matrix" target (benchmarks/memory.py). Here the moments are accumulated
block by block in float64 and the standardised matrix is written block by block into its one output, so a
head holds the cache's rows plus its one standardised train copy, and a few MiB besides.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler

BLOCK_BYTES = 16 * 2**20  # float64 bytes of one block of rows while accumulating moments or standardising
TORCH_CONSTANT = 1e-8  # the torch heads' rule: a feature whose std is below this is left unscaled (scale 1)


def _block_rows(dim: int) -> int:
    return max(1, BLOCK_BYTES // (8 * max(1, dim)))


def column_moments(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and (ddof 0) variance of X, in float64, in two blocked passes (centred, so as exact as
    numpy's own two-pass `var`)."""
    n, dim = X.shape
    step = _block_rows(dim)
    total = np.zeros(dim)
    for start in range(0, n, step):
        total += X[start:start + step].sum(axis=0, dtype=np.float64)
    mean = total / max(n, 1)
    squares = np.zeros(dim)
    for start in range(0, n, step):
        centred = X[start:start + step].astype(np.float64) - mean
        squares += np.einsum("ij,ij->j", centred, centred)
    return mean, squares / max(n, 1)


def fit_scaler(X: np.ndarray) -> StandardScaler:
    """A fitted sklearn `StandardScaler` (mean and std on X) from `column_moments`; sklearn treats a std below
    10 float64 eps as constant and leaves it unscaled, and so does this."""
    mean, var = column_moments(X)
    scale = _std(var, floor=10 * np.finfo(np.float64).eps)
    scaler = StandardScaler()
    scaler.mean_, scaler.var_, scaler.scale_ = mean, var, scale
    scaler.n_samples_seen_, scaler.n_features_in_ = len(X), X.shape[1]
    return scaler


def scaled_copy(X: np.ndarray, scaler: StandardScaler) -> np.ndarray:
    """`scaler.transform(X)` as float32, written block by block into one new array; sklearn's own arithmetic
    (float64 mean and scale, in place on the float32 rows) without its whole-matrix copy."""
    out = np.empty(X.shape, dtype=np.float32)
    step = _block_rows(X.shape[1])
    for start in range(0, len(X), step):
        block = out[start:start + step]
        np.subtract(X[start:start + step], scaler.mean_, out=block)
        block /= scaler.scale_
    return out


def torch_moments(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 (mean, scale) of the torch heads: std below `TORCH_CONSTANT` becomes 1."""
    mean, var = column_moments(X)
    return mean.astype(np.float32), _std(var, floor=TORCH_CONSTANT).astype(np.float32)


def _std(var: np.ndarray, *, floor: float) -> np.ndarray:
    """sqrt(var), with 1 for a feature whose std is below `floor`: a constant feature carries no signal."""
    scale = np.sqrt(var)
    scale[scale < floor] = 1.0
    return scale


def standardise(X: np.ndarray, mean: np.ndarray, scale: np.ndarray, device: torch.device) -> torch.Tensor:
    """(X - mean) / scale as one float32 tensor on `device`, filled block by block."""
    X = np.asarray(X)
    out = torch.empty(X.shape, dtype=torch.float32, device=device)
    m, s = torch.as_tensor(mean, device=device), torch.as_tensor(scale, device=device)
    step = _block_rows(X.shape[1])
    for start in range(0, len(X), step):
        block = out[start:start + step]
        block.copy_(torch.as_tensor(X[start:start + step]))
        block.sub_(m).div_(s)
    return out
