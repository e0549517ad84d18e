"""Nearest neighbours across splits by cosine similarity, computed in blocks so 100k x 768 fits in memory.

Only images outside train are queries (train-train pairs are no leak), and each query's candidates are the
images of the *other* splits. Memory: the unit-normalised features (N x D float32) plus one block of
`block_rows` x N similarities; 100k x 768 with 1,024-row blocks stays near 1 GB.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in float32 (an all-zero row stays zero, so it matches nothing)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def cross_split_neighbours(x: np.ndarray, splits: np.ndarray, queries: np.ndarray, *, k: int,
                           block_rows: int = 1024, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The `k` most cosine-similar rows of each query among rows of a different split.

    `x` (N, D) must be unit rows (see `unit_rows`); rows of `splits` that are "" take part in no pair.
    Returns (index (Q, k) int64, similarity (Q, k) float32), best first; missing neighbours have index -1 and
    similarity -inf.
    """
    codes = np.array([SPLIT_CODES.get(str(s), -1) for s in splits], dtype=np.int8)
    queries = np.asarray(queries, dtype=np.int64)
    k = max(1, min(k, len(x)))
    out_index = np.full((len(queries), k), -1, dtype=np.int64)
    out_sim = np.full((len(queries), k), -np.inf, dtype=np.float32)
    # Blocks never mix splits, so "same split" is one column mask per block rather than a (block, N) mask.
    work = [(code, np.flatnonzero(codes[queries] == code)) for code in np.unique(codes[queries]) if code >= 0]
    n_blocks = sum(-(-len(pos) // block_rows) for _, pos in work)
    with tqdm(total=n_blocks, desc="neighbours", unit="block", disable=None if progress else True, leave=False) as bar:
        for code, positions in work:
            excluded = (codes == code) | (codes < 0)
            for start in range(0, len(positions), block_rows):
                pos = positions[start:start + block_rows]
                out_index[pos], out_sim[pos] = _top_k(x[queries[pos]] @ x.T, excluded, k)
                bar.update()
    return out_index, out_sim


def _top_k(sim: np.ndarray, excluded: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k argmax passes (k is small): no (block, N) index array, unlike argpartition/argsort."""
    sim[:, excluded] = -np.inf
    rows = np.arange(len(sim))
    index = np.empty((len(sim), k), dtype=np.int64)
    best = np.empty((len(sim), k), dtype=np.float32)
    for j in range(k):
        index[:, j] = np.argmax(sim, axis=1)
        best[:, j] = sim[rows, index[:, j]]
        sim[rows, index[:, j]] = -np.inf
    index[~np.isfinite(best)] = -1
    return index, best
