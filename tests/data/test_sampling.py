"""data.sampling: whole patients, blank groups as patients of their own, stratified, seeded and order-free."""

from __future__ import annotations

import numpy as np
import pytest

from headstart.data.sampling import Units, carve, kfold, strata_counts, unit_keys, units_per_stratum


def _pool(n_patients: int = 150, *, blank_every: int = 4, seed: int = 0):
    """Patients of 1-4 images (one label each, ~30% positive); every `blank_every`-th patient's images have a
    blank group, so they are ungrouped images of their own."""
    rng = np.random.default_rng(seed)
    ids, groups, labels = [], [], []
    for p in range(n_patients):
        label = int(rng.random() < 0.3)
        for k in range(int(rng.integers(1, 5))):
            ids.append(f"p{p:04d}_{k}")
            groups.append("" if p % blank_every == 0 else f"p{p:04d}")
            labels.append(label)
    return np.array(ids, dtype=object), np.array(groups, dtype=object), np.array(labels)


def test_a_blank_group_is_its_own_unit_and_never_equals_a_named_group():
    keys = unit_keys(["a", "b", "c", "d"], ["", "", "a", None])
    assert len(set(keys.tolist())) == 4  # "a" the blank row and "a" the group are different patients
    assert keys[2] == "a"
    units = Units.build(["x", "y", "z"], ["g", "", "g"], [0, 1, 1])
    assert units.keys.tolist() == ["\0y", "g"]  # sorted by key
    assert units.counts.tolist() == [[0, 1], [1, 1]] and [m.tolist() for m in units.members] == [[1], [0, 2]]


def test_folds_keep_patients_whole_with_blank_groups_and_stay_stratified():
    ids, groups, labels = _pool()
    fold = kfold(ids, groups, labels, k=5, seed=(0, 1))
    for g in set(groups.tolist()) - {""}:
        assert len(set(fold[groups == g].tolist())) == 1, f"patient {g} straddles folds"
    blank = groups == ""
    assert len(set(fold[blank].tolist())) == 5  # ungrouped images are spread, not lumped into one fold
    sizes = np.bincount(fold, minlength=5)
    assert sizes.max() - sizes.min() <= 4  # at most one patient's images apart
    overall = labels.mean()
    for f in range(5):
        assert abs(labels[fold == f].mean() - overall) < 0.06


def test_folds_are_seeded_and_independent_of_row_order():
    ids, groups, labels = _pool()
    fold = dict(zip(ids, kfold(ids, groups, labels, k=5, seed=(3, 1)).tolist()))
    perm = np.random.default_rng(1).permutation(len(ids))
    again = dict(zip(ids[perm], kfold(ids[perm], groups[perm], labels[perm], k=5, seed=(3, 1)).tolist()))
    assert fold == again
    other = dict(zip(ids, kfold(ids, groups, labels, k=5, seed=(4, 1)).tolist()))
    assert other != fold


def test_every_class_in_every_fold_when_it_has_enough_patients():
    ids = np.array([f"i{i}" for i in range(40)], dtype=object)
    groups = np.array([""] * 40, dtype=object)
    labels = np.array([1] * 5 + [0] * 35)  # a rare class of exactly five ungrouped images
    assert units_per_stratum(ids, groups, labels).tolist() == [35, 5]
    fold = kfold(ids, groups, labels, k=5, seed=(0,))
    assert sorted(fold[labels == 1].tolist()) == [0, 1, 2, 3, 4]


def test_a_two_dimensional_key_stratifies_every_column():
    """A multi-label Task passes its (N, L) label matrix; each finding is spread over the folds."""
    rng = np.random.default_rng(0)
    n = 300
    Y = (rng.random((n, 3)) < [0.5, 0.2, 0.05]).astype(int)
    ids = np.array([f"i{i}" for i in range(n)], dtype=object)
    groups = np.array([f"p{i // 2}" for i in range(n)], dtype=object)
    counts, columns = strata_counts(Y)
    assert counts.shape == (n, 4) and columns.tolist() == [0, 1, 2, 3]  # 3 findings + "none of them"
    assert counts[:, 3].tolist() == (Y.sum(axis=1) == 0).astype(int).tolist()
    fold = kfold(ids, groups, Y, k=3, seed=(0,))
    for f in range(3):
        share = Y[fold == f].sum(axis=0) / Y.sum(axis=0)
        assert np.all(np.abs(share - 1 / 3) < 0.12), share
    none = Y.sum(axis=1) == 0  # images with no finding are carved too, not left out of every subset
    rows = carve(ids, groups, Y, n=60, seed=(0,))
    assert abs(len(rows) - 60) <= 4 and 0 < none[rows].sum() < none.sum()


def test_kfold_takes_another_assigner():
    ids, groups, labels = _pool(30)
    calls = []

    def round_robin(units: Units, k: int, seed) -> np.ndarray:
        calls.append((len(units.keys), k))
        return np.arange(len(units.keys)) % k

    fold = kfold(ids, groups, labels, k=3, seed=(0,), assign=round_robin)
    assert calls and calls[0][1] == 3 and set(fold.tolist()) == {0, 1, 2}
    for g in set(groups.tolist()) - {""}:
        assert len(set(fold[groups == g].tolist())) == 1


def test_carve_takes_whole_patients_near_the_target_and_never_everything():
    ids, groups, labels = _pool()
    rows = carve(ids, groups, labels, n=round(0.2 * len(ids)), seed=(0, 0))
    assert abs(len(rows) - 0.2 * len(ids)) <= 4
    inside = np.zeros(len(ids), dtype=bool)
    inside[rows] = True
    for g in set(groups.tolist()) - {""}:
        assert inside[groups == g].all() or not inside[groups == g].any()
    assert abs(labels[rows].mean() - labels.mean()) < 0.06
    one = carve(["a", "b", "c"], ["p", "p", "p"], [0, 1, 0], n=2, seed=(0,))
    assert one.size == 0  # one patient holds everything: nothing is carved, something is left to fit on


def test_bad_keys_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        strata_counts(np.array([[1, -1]]))
    with pytest.raises(ValueError, match="1-D"):
        strata_counts(np.zeros((2, 2, 2)))
