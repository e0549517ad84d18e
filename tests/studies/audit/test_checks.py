"""The audit checks as pure functions over arrays: each decision tested on data built to trigger it (or not)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from headstart.cache.header import MetaTable
from headstart.studies.audit.config import AuditConfig
from headstart.studies.audit.inputs import AuditInputs
from headstart.studies.audit.leakage import patient_leakage
from headstart.studies.audit.metadata import metadata_baseline, metadata_matrix
from headstart.studies.audit.near_duplicates import _rule, find_pairs
from headstart.studies.audit.neighbours import cross_split_neighbours, unit_rows
from headstart.studies.audit.power import min_detectable_difference
from headstart.studies.audit.reference import fit_reference
from headstart.studies.audit.result import jsonable
from headstart.studies.audit.shift import split_shift
from headstart.studies.audit.shuffle import label_shuffle

CONFIG = AuditConfig(n_boot=200, power_sims=60)


def inputs(x, labels, splits, *, groups=None, meta=None, attrs=None) -> AuditInputs:
    n = len(labels)
    return AuditInputs(path="mem", ids=np.array([f"i{k}" for k in range(n)], dtype=object),
                       labels=np.asarray(labels), splits=np.asarray(splits, dtype=object),
                       groups=np.asarray(groups if groups is not None else [""] * n, dtype=object),
                       classes=["NORMAL", "PNEUMONIA"], root_attrs=attrs or {}, meta=meta or MetaTable(),
                       feature_set=None if x is None else "f", features=x,
                       valid=None if x is None else np.ones(n, dtype=bool))


def three_splits(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    splits = rng.choice(["train", "val", "test"], size=n, p=[0.6, 0.2, 0.2])
    return rng.integers(0, 2, n), splits


def test_neighbours_blockwise_equal_brute_force():
    rng = np.random.default_rng(0)
    x = unit_rows(rng.normal(size=(300, 16)))
    splits = rng.choice(["train", "val", "test"], size=300)
    queries = np.flatnonzero(splits != "train")
    index, sim = cross_split_neighbours(x, splits, queries, k=3, block_rows=7, progress=False)
    full = x[queries] @ x.T
    full[splits[queries][:, None] == splits[None, :]] = -np.inf
    expect = np.argsort(-full, axis=1)[:, :3]
    assert np.array_equal(index, expect)
    assert np.allclose(sim, np.take_along_axis(full, expect, axis=1))
    assert all(splits[q] != splits[j] for q, row in zip(queries, index) for j in row)


@pytest.mark.parametrize("bits, ratio, expected", [
    (0, 0.01, "phash"), (4, 0.29, "phash"), (4, 0.5, None),  # a hash look-alike far away in embedding space
    (8, 0.05, "embedding+phash"), (12, 0.05, None),  # far-closer-than-anything, but pixels disagree
    (-1, 0.1, "embedding"), (-1, 0.2, None),  # no hash: the relative rule alone
])
def test_near_duplicate_rule(bits, ratio, expected):
    assert _rule(bits, ratio, AuditConfig()) == expected


def test_find_pairs_needs_relative_closeness_not_absolute_similarity():
    # Random-weight embeddings: every cosine is ~0.999; only the copy is much closer than the 5th neighbour.
    queries = np.array([10, 11])
    index = np.array([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    sim = np.array([[0.99999, 0.9991, 0.9990, 0.9990, 0.9989], [0.9993, 0.9992, 0.9991, 0.9990, 0.9989]],
                   dtype=np.float32)
    found = find_pairs(queries, index, sim, phash=None, config=AuditConfig())
    assert [(a, b, method) for a, b, _, _, method in found] == [(10, 0, "embedding")]


def test_metadata_matrix_drops_constant_columns_and_one_hots():
    cols = {"width": np.array([10, 20, 10]), "height": np.array([10, 10, 10]), "file_size": np.array([5, 6, 7]),
            "mode": np.array(["L", "RGB", "L"], dtype=object), "format": np.array(["PNG"] * 3, dtype=object)}
    x, names = metadata_matrix(cols, np.arange(3))
    assert "log_height" not in names and "format=PNG" not in names
    assert {"log_width", "log_aspect_ratio", "log_file_size", "mode=L", "mode=RGB"} <= set(names)
    assert x.shape == (3, len(names))


def test_metadata_baseline_unflagged_when_metadata_is_noise():
    rng = np.random.default_rng(1)
    labels, splits = three_splits(600, rng)
    meta = MetaTable(columns={"width": rng.integers(200, 300, 600), "height": rng.integers(200, 300, 600),
                              "file_size": rng.integers(10_000, 20_000, 600),
                              "format": np.array(["JPEG"] * 600, dtype=object)}, present=True)
    result = metadata_baseline(inputs(None, labels, splits, meta=meta), CONFIG)
    assert not result.flagged and result.data["auroc_ci"][0] < 0.6 < result.data["auroc_ci"][1] + 0.2


def test_patient_leakage_counts_and_origin():
    groups = ["a", "a", "b", "b", "c", ""]
    splits = ["train", "test", "train", "train", "val", "test"]
    result = patient_leakage(inputs(None, [0] * 6, splits, groups=groups, attrs={"source": {"kind": "folder"}}))
    assert result.flagged and result.data["n_leaked"] == 1 and result.data["split_pairs"] == {"train-test": 1}
    assert "carved by headstart" in result.message and "17% of images have no group" in result.message
    clean = patient_leakage(inputs(None, [0] * 4, ["train", "train", "test", "val"], groups=["a", "a", "b", "c"]))
    assert not clean.flagged and clean.data["n_leaked"] == 0


def test_split_shift_flags_a_shifted_test_set_and_suggests_existing_rules():
    rng = np.random.default_rng(2)
    labels, splits = three_splits(900, rng)
    x = rng.normal(size=(900, 12)).astype(np.float32) + labels[:, None] * 0.8
    x[splits == "test", :3] += 1.5  # the test scanner
    data = inputs(x, labels, splits)
    result = split_shift(data, fit_reference(data, CONFIG), CONFIG)
    assert result.flagged and result.data["domain_auroc"] > 0.8
    assert "sensitivity:0.95" in result.data["suggested_threshold_rules"]
    unshifted = rng.normal(size=(900, 12)).astype(np.float32) + labels[:, None] * 0.8
    calm = inputs(unshifted, labels, splits)
    assert split_shift(calm, fit_reference(calm, CONFIG), CONFIG).data["domain_auroc_ci"][0] < 0.6


def test_label_shuffle_at_chance_even_with_informative_features():
    rng = np.random.default_rng(3)
    labels, splits = three_splits(800, rng)
    x = rng.normal(size=(800, 10)).astype(np.float32) + labels[:, None] * 0.5
    data = inputs(x, labels, splits)
    result = label_shuffle(data, fit_reference(data, CONFIG), CONFIG)
    assert not result.flagged and abs(result.data["auroc_mean"] - 0.5) < 0.15 and len(result.data["aurocs"]) == 5


def test_label_shuffle_flags_a_shuffle_that_does_not_shuffle(monkeypatch):
    rng = np.random.default_rng(3)
    labels, splits = three_splits(800, rng)
    x = rng.normal(size=(800, 10)).astype(np.float32) + labels[:, None] * 0.5
    data = inputs(x, labels, splits)
    reference = fit_reference(data, CONFIG)
    monkeypatch.setattr("headstart.studies.audit.shuffle.shuffled", lambda labels, rng: labels)  # the bug
    result = label_shuffle(data, reference, CONFIG)
    assert result.flagged and result.data["auroc_mean"] > 0.75 and "far from chance" in result.message


def test_min_detectable_difference_shrinks_with_test_size():
    rng = np.random.default_rng(4)

    def mdd(n: int) -> float:
        y = np.r_[np.zeros(n // 2, dtype=int), np.ones(n // 2, dtype=int)]
        scores = rng.normal(size=n) + 1.4 * y  # AUROC about 0.84
        return min_detectable_difference(y, scores, rho=0.8, sims=80, seed=0)

    small, large = mdd(100), mdd(1600)
    assert 0 < large < small < 0.3


def test_min_detectable_difference_none_for_a_tiny_test_set():
    y = np.r_[np.zeros(5, dtype=int), np.ones(5, dtype=int)]
    scores = np.random.default_rng(5).normal(size=10) + y
    assert min_detectable_difference(y, scores, rho=0.8, sims=60, seed=0) is None


def test_jsonable_turns_nan_into_null():
    assert jsonable({"a": float("nan"), "b": np.float32(1.5), "c": np.array([1, 2])}) == {"a": None, "b": 1.5,
                                                                                           "c": [1, 2]}
    assert not math.isnan(jsonable(np.float64(0.25)))
