"""Iterative stratification of whole units (patients) into folds, for multi-label keys.

Sechidis, Tsoumakas & Vlahavas (2011), "On the stratification of multi-label data", over `sampling.Units`
instead of rows, so a patient never straddles two folds. The rarest stratum (finding) is placed first (the one a
greedy or random split most easily leaves out of a fold); each unit holding it goes to the fold that still wants
the most of it, ties broken by the fold that still wants the most rows, then at random. Larger units go first
within a stratum. The `iterative-stratification` package does this for rows, not groups, which is why this
small version exists.

It plugs into the one sampler (`sampling.py`): `iterative_assign` is a `sampling.FoldAssigner` for
`sampling.kfold(..., assign=iterative_assign)`, and `iterative_carve` is `sampling.carve`'s multi-label
counterpart. Pure: ids, groups, a key and a seed in; rows or folds out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from headstart.data.sampling import Units, kfold


def iterative_folds(units: Units, shares: Sequence[float], seed: Sequence[int]) -> np.ndarray:
    """Fold (0..len(shares)-1) of each unit; fold k gets about shares[k] of the rows and of every stratum."""
    share = np.asarray(shares, dtype=np.float64)
    if share.ndim != 1 or len(share) < 1 or (share < 0).any() or share.sum() <= 0:
        raise ValueError(f"fold shares {list(shares)} must be non-negative with a positive sum")
    share = share / share.sum()
    counts, sizes = units.counts, units.sizes()
    rank = np.empty(len(sizes), dtype=np.int64)
    rank[units.visit(seed)] = np.arange(len(sizes))  # the sampler's seeded order among otherwise equal units
    tie = np.random.default_rng([int(s) for s in seed] + [1])  # a stream of its own for ties between folds
    want_stratum = share[:, None] * counts.sum(axis=0)[None, :]  # (K, S) what each fold still wants
    want_rows = share * sizes.sum()
    fold = np.full(len(sizes), -1, dtype=np.int64)

    def place(u: int, stratum: int | None) -> None:
        rows = want_rows + 1e-9 * tie.random(len(share))
        if stratum is None:
            k = int(np.argmax(rows))
        else:
            wanted = want_stratum[:, stratum]
            candidates = np.flatnonzero(wanted >= wanted.max() - 1e-9)
            k = int(candidates[np.argmax(rows[candidates])])
        fold[u] = k
        want_stratum[k] -= counts[u]
        want_rows[k] -= sizes[u]

    remaining = counts.copy()
    while True:
        totals = remaining.sum(axis=0)
        open_strata = np.flatnonzero(totals > 0)
        if not len(open_strata):
            break
        stratum = int(open_strata[np.argmin(totals[open_strata])])  # the rarest stratum still unplaced
        holders = np.flatnonzero(remaining[:, stratum] > 0)
        for u in holders[np.lexsort((rank[holders], -sizes[holders]))]:
            place(int(u), stratum)
            remaining[u] = 0
    rest = np.flatnonzero(fold < 0)  # units without any count (only with an all-zero key column)
    for u in rest[np.lexsort((rank[rest], -sizes[rest]))]:
        place(int(u), None)
    return fold


def iterative_assign(units: Units, k: int, seed: Sequence[int]) -> np.ndarray:
    """A `sampling.FoldAssigner`: k equal folds by iterative stratification."""
    return iterative_folds(units, [1.0 / k] * k, seed)


def iterative_carve(ids, groups, key, *, n: int, seed: Sequence[int]) -> np.ndarray:
    """Row positions of whole units totalling about `n` rows, each stratum of `key` in proportion (the
    multi-label counterpart of `sampling.carve`). Never every row: then nothing is carved."""
    units = Units.build(ids, groups, key)
    n_rows = int(units.sizes().sum())
    if n <= 0 or n_rows == 0:
        return np.zeros(0, dtype=np.int64)
    fold = iterative_folds(units, [n, max(0, n_rows - n)], seed)
    rows = units.rows(np.flatnonzero(fold == 0))
    return rows if len(rows) < n_rows else np.zeros(0, dtype=np.int64)


def iterative_group_folds(positives: np.ndarray, groups: Sequence[str], fractions: Sequence[float], *,
                          seed: int | Sequence[int] = 0) -> np.ndarray:
    """Fold index for every row of a (N, L) 0/1 label matrix, `groups` keying rows ("": a row alone)."""
    y = np.asarray(positives)
    if y.ndim != 2 or len(y) != len(groups):
        raise ValueError(f"positives {y.shape} must be (N, L) with one group key per row ({len(groups)})")
    seeds = [int(seed)] if np.isscalar(seed) else [int(s) for s in seed]
    ids = [str(i) for i in range(len(y))]
    return kfold(ids, list(groups), y.astype(np.int64), k=len(fractions), seed=seeds,
                 assign=lambda units, _k, s: iterative_folds(units, fractions, s))
