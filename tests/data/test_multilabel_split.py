"""Iterative stratification of whole groups, and its use in the multi-label carve."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from headstart.data.multilabel_split import iterative_group_folds
from headstart.data.splits import assign_splits
from headstart.data.types import Sample, SplitConfig


def _data(n_groups=200, n_labels=6, seed=0):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, n_groups)
    groups = [f"p{g}" for g, k in enumerate(sizes) for _ in range(k)]
    prevalence = np.array([0.4, 0.2, 0.1, 0.05, 0.02, 0.01])[:n_labels]
    y = rng.random((len(groups), n_labels)) < prevalence
    return y, groups


def test_groups_never_straddle_and_fractions_hold():
    y, groups = _data()
    folds = iterative_group_folds(y, groups, [0.2, 0.1, 0.7], seed=3)
    fold_of: dict[str, set] = {}
    for g, f in zip(groups, folds):
        fold_of.setdefault(g, set()).add(int(f))
    assert all(len(v) == 1 for v in fold_of.values())
    share = np.bincount(folds, minlength=3) / len(folds)
    assert np.allclose(share, [0.2, 0.1, 0.7], atol=0.03)


def test_rare_labels_are_spread_better_than_a_random_group_split():
    y, groups = _data(seed=1)
    folds = iterative_group_folds(y, groups, [0.5, 0.5], seed=0)
    error = np.abs(y[folds == 0].sum(0) - y.sum(0) / 2).sum()
    rng = np.random.default_rng(0)
    names = sorted(set(groups))
    random_errors = []
    for _ in range(20):
        picked = set(rng.permutation(names)[: len(names) // 2])
        mask = np.array([g in picked for g in groups])
        random_errors.append(np.abs(y[mask].sum(0) - y.sum(0) / 2).sum())
    assert error < np.median(random_errors) / 2
    for label in range(y.shape[1]):  # every label with >= 2 positives lands in both halves
        if y[:, label].sum() >= 2:
            assert y[folds == 0, label].any() and y[folds == 1, label].any()


def test_deterministic_for_a_seed_and_ungrouped_rows_are_alone():
    y, groups = _data()
    a = iterative_group_folds(y, groups, [0.3, 0.7], seed=5)
    assert np.array_equal(a, iterative_group_folds(y, groups, [0.3, 0.7], seed=5))
    assert not np.array_equal(a, iterative_group_folds(y, groups, [0.3, 0.7], seed=6))
    ungrouped = iterative_group_folds(y[:10], [""] * 10, [0.5, 0.5], seed=0)
    assert sorted(Counter(ungrouped.tolist()).values()) == [5, 5]


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        iterative_group_folds(np.zeros((3, 2)), ["a"], [0.5, 0.5])
    with pytest.raises(ValueError):
        iterative_group_folds(np.zeros((1, 2)), ["a"], [0, 0])


def test_assign_splits_carves_multilabel_by_groups_and_keeps_given_test():
    y, groups = _data(seed=2)
    samples = [Sample(id=f"{i:04d}", label=0, group=g, labels=tuple(int(v) for v in row),
                      split="test" if g in ("p0", "p1") else "")
               for i, (g, row) in enumerate(zip(groups, y))]
    result = assign_splits(samples, SplitConfig(val_fraction=0.2, seed=0), classes=[str(j) for j in range(6)])
    by_split = Counter(s.split for s in result)
    assert {s.id for s in result if s.split == "test"} == {s.id for s in samples if s.split == "test"}
    assert abs(by_split["val"] / (by_split["val"] + by_split["train"]) - 0.2) < 0.03
    fold_of: dict[str, set] = {}
    for s in result:
        fold_of.setdefault(s.group, set()).add(s.split)
    assert all(len(v) == 1 for v in fold_of.values())


def test_plugs_into_the_sampler_as_a_fold_assigner_and_a_carve():
    from headstart.data.multilabel_split import iterative_assign, iterative_carve
    from headstart.data.sampling import kfold

    y, groups = _data(seed=4)
    ids = [f"r{i}" for i in range(len(y))]
    folds = kfold(ids, groups, y.astype(np.int64), k=5, seed=[0], assign=iterative_assign)
    assert sorted(set(folds.tolist())) == [0, 1, 2, 3, 4]
    assert np.allclose(np.bincount(folds) / len(folds), 0.2, atol=0.03)
    rows = iterative_carve(ids, groups, y.astype(np.int64), n=100, seed=[0, 1])
    assert abs(len(rows) - 100) <= 5 and len(set(rows.tolist())) == len(rows)
    carved_groups = {groups[i] for i in rows}
    assert not carved_groups & {g for i, g in enumerate(groups) if i not in set(rows.tolist())}
    assert len(iterative_carve(ids[:3], ["p"] * 3, y[:3].astype(np.int64), n=2, seed=[0])) == 0  # one unit: none
