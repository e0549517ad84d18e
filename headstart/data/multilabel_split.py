"""Iterative stratification of whole groups (patients) into folds, for multi-label data.

Sechidis, Tsoumakas & Vlahavas (2011), "On the stratification of multi-label data", adapted to groups: a
patient's images are one unit, so a patient never straddles two folds. The rarest label is placed first (the
one a random split most easily leaves out of a fold); each group holding it goes to the fold that still wants
the most of that label, ties broken by the fold that wants the most images, then at random. Groups without any
positive fill the folds by size last. The `iterative-stratification` package does this for rows, not groups,
which is why this small version exists.

Pure: a label matrix, group keys, fractions and a seed in; one fold index per row out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def iterative_group_folds(positives: np.ndarray, groups: Sequence[str], fractions: Sequence[float], *,
                          seed: int | Sequence[int] = 0) -> np.ndarray:
    """Fold index (0..len(fractions)-1) for every row of `positives` (N, L) bool; `groups` keys rows ("": alone).

    Fractions are normalised to sum to 1; fold k receives about fractions[k] of the rows and of each label's
    positives. Deterministic for a given input and seed.
    """
    y = np.asarray(positives, dtype=bool)
    if y.ndim != 2 or len(y) != len(groups):
        raise ValueError(f"positives {y.shape} must be (N, L) with one group key per row ({len(groups)})")
    share = np.asarray(fractions, dtype=np.float64)
    if share.ndim != 1 or len(share) < 1 or (share < 0).any() or share.sum() <= 0:
        raise ValueError(f"fractions {list(fractions)} must be non-negative with a positive sum")
    share = share / share.sum()

    keys = [g if g else f"\0{i}" for i, g in enumerate(groups)]  # "\0": an ungrouped row is its own group
    unique, member = np.unique(np.asarray(keys, dtype=object), return_inverse=True)
    n_groups = len(unique)
    counts = np.zeros((n_groups, y.shape[1]), dtype=np.int64)  # positives per group and label
    np.add.at(counts, member, y.astype(np.int64))
    sizes = np.bincount(member, minlength=n_groups)

    rng = np.random.default_rng(list(seed) if isinstance(seed, Sequence) else seed)
    want_label = share[:, None] * counts.sum(axis=0)[None, :]  # (K, L) positives each fold still wants
    want_rows = share * len(y)  # (K,) rows each fold still wants
    fold_of = np.full(n_groups, -1)
    jitter = rng.random(n_groups)  # a seeded order among otherwise equal groups

    def place(g: int, label: int | None) -> None:
        score_rows = want_rows + 1e-9 * rng.random(len(share))  # random tie-break among equal folds
        if label is None:
            k = int(np.argmax(score_rows))
        else:
            best = want_label[:, label].max()
            candidates = np.flatnonzero(want_label[:, label] >= best - 1e-9)
            k = int(candidates[np.argmax(score_rows[candidates])])
        fold_of[g] = k
        want_label[k] -= counts[g]
        want_rows[k] -= sizes[g]

    remaining = counts.copy()
    while True:
        totals = remaining.sum(axis=0)
        open_labels = np.flatnonzero(totals > 0)
        if not len(open_labels):
            break
        label = int(open_labels[np.argmin(totals[open_labels])])  # the rarest label still unplaced
        holders = np.flatnonzero((remaining[:, label] > 0) & (fold_of < 0))
        # Large groups first (they are the hardest to fit), then the seeded order.
        for g in holders[np.lexsort((jitter[holders], -sizes[holders]))]:
            place(int(g), label)
            remaining[g] = 0
    rest = np.flatnonzero(fold_of < 0)
    for g in rest[np.lexsort((jitter[rest], -sizes[rest]))]:
        place(int(g), None)
    return fold_of[member]
