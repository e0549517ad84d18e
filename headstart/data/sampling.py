"""The one grouped, stratified sampler: carved splits, curve draws, screen rounds and cross-validation folds.

Every subset headstart takes from labelled rows goes through here, so one rule holds everywhere:
- **Units.** Rows are sampled in whole units (patients). A row with a blank group is a unit of its own, keyed so
  that no named group can equal it (`unit_keys`). A blank group never turns grouping off for the other rows.
- **Strata.** A stratification key gives each row its contribution to each stratum column (`strata_counts`):
  a 1-D key (class index, or any hashable such as a class x split code) is one column per distinct value; a
  2-D (N, S) non-negative matrix is used as is, so a multi-label Task can pass its (N, L) label matrix and a
  row counts toward every finding it holds (rows with none share one extra column). A unit's counts are the
  sum of its rows'.
- **Order-free.** Units are sorted by key and visited in a seeded random permutation, so a result depends only
  on the ids, groups, key and seed, never on the order rows come in.

Three greedy rules share that walk (`Units.visit`):
- `take_closest`: take a unit whenever it brings the taken counts closer (L1) to a target (carved splits);
- `take_short`: take a unit whenever every stratum it holds is still short of its target, and stop when all
  are met (curve draws, screen rounds): a draw overshoots by at most the rest of its last unit;
- `assign_folds`: k-fold assignment, each unit to the fold it brings closest to that fold's share of every
  stratum (ties: the fold with fewest rows). Large units go first. `kfold` takes any function of the same
  shape (`FoldAssigner`), so an iterative stratification for multi-label keys can replace it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

_BLANK_PREFIX = "\0"  # a blank group's unit key is "\0" + the row id: no named group can start with NUL


def unit_keys(ids: Sequence[str] | np.ndarray, groups: Sequence[str] | np.ndarray) -> np.ndarray:
    """One key per row: its group, or for a blank (or None) group a key of its own that no group can equal."""
    return np.asarray([str(g) if g else f"{_BLANK_PREFIX}{i}" for i, g in zip(ids, groups)], dtype=object)


def strata_counts(key: Sequence | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(per-row counts (N, S) int64, the S column labels) of a stratification key (see the module doc)."""
    key = np.asarray(key)
    if key.ndim == 2:
        counts = key.astype(np.int64)
        if (counts < 0).any():
            raise ValueError("a 2-D stratification key must be non-negative counts (e.g. a 0/1 label matrix)")
        empty = counts.sum(axis=1) == 0
        if empty.any():  # rows with no positive (a "No Finding" image) get a column of their own, so they are drawn
            counts = np.column_stack([counts, empty.astype(np.int64)])
        return counts, np.arange(counts.shape[1])
    if key.ndim != 1:
        raise ValueError(f"a stratification key is 1-D (one value per row) or 2-D (N, S); got shape {key.shape}")
    values, codes = np.unique(key, return_inverse=True)
    counts = np.zeros((len(key), len(values)), dtype=np.int64)
    counts[np.arange(len(key)), codes.reshape(-1)] = 1
    return counts, values


@dataclass(frozen=True)
class Units:
    """Rows grouped into units (patients), sorted by key, with their counts per stratum."""

    keys: np.ndarray  # (U,) unit keys, ascending
    members: list[np.ndarray]  # row positions of each unit, ascending
    counts: np.ndarray  # (U, S) rows of each unit per stratum column
    strata: np.ndarray  # (S,) the column labels (the key's distinct values, or 0..S-1 for a 2-D key)

    @classmethod
    def build(cls, ids: Sequence[str] | np.ndarray, groups: Sequence[str] | np.ndarray,
              key: Sequence | np.ndarray) -> Units:
        keys = unit_keys(ids, groups)
        row_counts, strata = strata_counts(key)
        if not (len(keys) == len(row_counts)):
            raise ValueError(f"sampler inputs differ in length: {len(keys)} ids/groups, {len(row_counts)} keys")
        order = np.argsort(keys, kind="stable")
        unique, starts, inverse = np.unique(keys[order], return_index=True, return_inverse=True)
        counts = np.zeros((len(unique), row_counts.shape[1]), dtype=np.int64)
        np.add.at(counts, inverse.reshape(-1), row_counts[order])
        return cls(unique, np.split(order, starts[1:]) if len(order) else [], counts, strata)

    @property
    def totals(self) -> np.ndarray:
        """(S,) rows per stratum over every unit."""
        return self.counts.sum(axis=0)

    def sizes(self) -> np.ndarray:
        """(U,) rows per unit."""
        return np.fromiter((len(m) for m in self.members), dtype=np.int64, count=len(self.members))

    def rows(self, units: Sequence[int] | np.ndarray) -> np.ndarray:
        """Row positions of the given units, ascending."""
        chosen = [self.members[u] for u in units]
        return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)

    def visit(self, seed: Sequence[int]) -> np.ndarray:
        """The seeded order every rule walks the units in."""
        return np.random.default_rng([int(s) for s in seed]).permutation(len(self.keys))


def take_closest(units: Units, target: np.ndarray, *, seed: Sequence[int]) -> np.ndarray:
    """Units taken by one pass that keeps a unit whenever it brings the taken counts closer to `target` (S,)."""
    target = np.asarray(target, dtype=np.float64)
    taken = np.zeros(len(target))
    chosen = []
    for u in units.visit(seed):
        add = units.counts[u]
        if np.abs(taken + add - target).sum() < np.abs(taken - target).sum():
            taken += add
            chosen.append(u)
    return np.asarray(chosen, dtype=np.int64)


def take_short(units: Units, target: np.ndarray, *, seed: Sequence[int]) -> np.ndarray:
    """Units taken by one pass that keeps a unit when every stratum it holds is short of `target` (S,)."""
    target = np.asarray(target)
    taken = np.zeros(len(target), dtype=np.int64)
    chosen = []
    for u in units.visit(seed):
        if np.all(taken >= target):
            break
        add = units.counts[u]
        if np.all(taken[add > 0] < target[add > 0]):
            taken += add
            chosen.append(u)
    return np.asarray(chosen, dtype=np.int64)


def carve(ids, groups, key, *, n: int, seed: Sequence[int]) -> np.ndarray:
    """Row positions of whole units totalling about `n` rows, stratified by `key` (`take_closest`, each
    stratum's target its share of `n`). Never every row: when that would happen (one unit holds everything),
    nothing is carved, so the caller keeps rows to fit on."""
    units = Units.build(ids, groups, key)
    n_rows = sum(len(m) for m in units.members)
    if n <= 0 or n_rows == 0:
        return np.zeros(0, dtype=np.int64)
    rows = units.rows(take_closest(units, units.totals * n / n_rows, seed=seed))
    return rows if len(rows) < n_rows else np.zeros(0, dtype=np.int64)


FoldAssigner = Callable[[Units, int, Sequence[int]], np.ndarray]  # (units, k, seed) -> fold of each unit (U,)


def assign_folds(units: Units, k: int, seed: Sequence[int]) -> np.ndarray:
    """Each unit's fold in 0..k-1: largest units first (a seeded order among equals), each to the fold whose
    counts it brings closest (L1) to that fold's share of every stratum; ties go to the fold with fewest rows."""
    share = (units.totals / k).tolist()
    sizes = units.sizes()
    order = units.visit(seed)
    order = order[np.argsort(-sizes[order], kind="stable")].tolist()
    held = [[0] * len(share) for _ in range(k)]  # plain lists: a Python loop over small lists beats numpy here
    rows = [0] * k
    fold = [0] * len(sizes)
    counts, sizes = units.counts.tolist(), sizes.tolist()
    unit_of, column = np.nonzero(units.counts)  # row-major: each unit's non-zero columns, in column order
    cols_of = [[] for _ in sizes]
    for u, c in zip(unit_of.tolist(), column.tolist()):
        cols_of[u].append(c)
    for u in order:
        add, cols = counts[u], cols_of[u]
        best, best_cost = 0, None
        for f in range(k):
            h, moved = held[f], 0.0
            for c in cols:
                moved += abs(h[c] + add[c] - share[c]) - abs(h[c] - share[c])
            cost = (moved, rows[f])
            if best_cost is None or cost < best_cost:  # strict: ties go to the lower fold index
                best, best_cost = f, cost
        for c in cols:
            held[best][c] += add[c]
        rows[best] += sizes[u]
        fold[u] = best
    return np.asarray(fold, dtype=np.int64)


def kfold(ids, groups, key, *, k: int, seed: Sequence[int], assign: FoldAssigner = assign_folds) -> np.ndarray:
    """The fold (0..k-1) of every row: whole units, stratified by `key`; blank groups are units of their own."""
    units = Units.build(ids, groups, key)
    unit_fold = np.asarray(assign(units, k, seed), dtype=np.int64)
    sizes = units.sizes()
    out = np.zeros(int(sizes.sum()), dtype=np.int64)
    if len(out):
        out[np.concatenate(units.members)] = np.repeat(unit_fold, sizes)
    return out


def units_per_stratum(ids, groups, key) -> np.ndarray:
    """(S,) how many units hold each stratum: the most folds in which every stratum can appear."""
    return (Units.build(ids, groups, key).counts > 0).sum(axis=0)
