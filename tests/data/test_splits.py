"""assign_splits: kept splits, carve-outs that are grouped, stratified and deterministic."""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict

import pytest

from headstart.data.splits import assign_splits
from headstart.data.types import Sample, SplitConfig
from headstart.errors import ConfigError, DataError

CLASSES = ["NORMAL", "PNEUMONIA"]


def _patients(n_patients: int, *, seed: int = 0, split: str = "", prefix: str = "p") -> list[Sample]:
    """Patients with 1-4 images each; about 1 in 4 is NORMAL, like the Kaggle set."""
    rng = random.Random(seed)
    samples = []
    for p in range(n_patients):
        label = int(rng.random() > 0.26)
        for k in range(rng.randint(1, 4)):
            samples.append(Sample(id=f"{split or 'all'}/{prefix}{p:04d}_{k}", label=label, split=split,
                                  group=f"{prefix}{p:04d}"))
    return samples


def _by_split(samples: list[Sample]) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        out[s.split].append(s)
    return out


def _assert_no_group_straddles(samples: list[Sample]) -> None:
    splits_of = defaultdict(set)
    for s in samples:
        if s.group:
            splits_of[s.group].add(s.split)
    assert all(len(v) == 1 for v in splits_of.values())


def test_carves_val_and_test_grouped_and_stratified():
    samples = _patients(400)
    out = assign_splits(samples, SplitConfig(), classes=CLASSES)
    parts = _by_split(out)
    assert set(parts) == {"train", "val", "test"}
    n = len(samples)
    assert abs(len(parts["test"]) - 0.2 * n) <= 4
    assert abs(len(parts["val"]) - 0.1 * (len(parts["train"]) + len(parts["val"]))) <= 4
    _assert_no_group_straddles(out)
    overall = sum(s.label for s in samples) / n
    for part in parts.values():
        assert abs(sum(s.label for s in part) / len(part) - overall) < 0.04  # stratified


def test_output_keeps_input_order_and_fields():
    samples = _patients(50)
    out = assign_splits(samples, SplitConfig(), classes=CLASSES)
    assert [(s.id, s.label, s.group) for s in out] == [(s.id, s.label, s.group) for s in samples]
    assert all(s.split == "" for s in samples)  # inputs are not mutated


def test_deterministic_for_a_seed_and_independent_of_input_order():
    samples = _patients(120)
    first = {s.id: s.split for s in assign_splits(samples, SplitConfig(seed=3), classes=CLASSES)}
    shuffled = samples[:]
    random.Random(1).shuffle(shuffled)
    again = {s.id: s.split for s in assign_splits(shuffled, SplitConfig(seed=3), classes=CLASSES)}
    assert first == again
    other = {s.id: s.split for s in assign_splits(samples, SplitConfig(seed=4), classes=CLASSES)}
    assert other != first


def test_given_test_is_never_touched():
    train, test = _patients(100, split="train"), _patients(30, seed=1, split="test", prefix="t")
    out = assign_splits(train + test, SplitConfig(), classes=CLASSES)
    assert {s.id for s in out if s.split == "test"} == {s.id for s in test}
    assert Counter(s.split for s in out)["val"] > 0


def test_tiny_given_val_is_kept_and_topped_up():
    train = _patients(200, split="train")
    tiny_val = _patients(6, seed=2, split="val", prefix="v")[:16]
    test = _patients(20, seed=3, split="test", prefix="t")
    out = assign_splits(train + tiny_val + test, SplitConfig(min_val=50, val_fraction=0.1), classes=CLASSES)
    val_ids = {s.id for s in out if s.split == "val"}
    assert {s.id for s in tiny_val} <= val_ids
    n_train_val = len(train) + len(tiny_val)
    assert abs(len(val_ids) - 0.1 * n_train_val) <= 4 and len(val_ids) > len(tiny_val)
    _assert_no_group_straddles([s for s in out if s.split in ("train", "val")])


def test_big_enough_given_val_is_kept_as_is():
    train, val = _patients(100, split="train"), _patients(40, seed=5, split="val", prefix="v")
    assert len(val) >= 50
    out = assign_splits(train + val + _patients(10, seed=6, split="test", prefix="t"), SplitConfig(),
                        classes=CLASSES)
    assert {s.id for s in out if s.split == "val"} == {s.id for s in val}


def test_ungrouped_images_are_groups_of_one():
    samples = [Sample(id=f"x{i:03d}", label=i % 2) for i in range(100)]
    out = assign_splits(samples, SplitConfig(), classes=CLASSES)
    counts = Counter(s.split for s in out)
    assert counts["test"] == 20 and counts["val"] == 8 and counts["train"] == 72


def test_unsplit_manifest_rows_join_the_train_pool():
    given = _patients(20, split="test", prefix="t")
    loose = _patients(100)
    out = assign_splits(given + loose, SplitConfig(), classes=CLASSES)
    assert {s.split for s in out} == {"train", "val", "test"}
    assert {s.id for s in out if s.split == "test"} == {s.id for s in given}


def test_warns_when_given_splits_share_a_patient(caplog):
    samples = [Sample(id="a", label=0, split="train", group="p1"), Sample(id="b", label=0, split="test", group="p1"),
               Sample(id="c", label=1, split="train", group="p2"), Sample(id="d", label=1, split="test")]
    with caplog.at_level(logging.WARNING):
        assign_splits(samples, SplitConfig(min_val=0), classes=CLASSES)
    assert "1 patient group(s) appear in more than one split (e.g. p1)" in caplog.text


@pytest.mark.parametrize("val, test", [(0.5, 0.5), (0.0, 0.2), (0.1, 1.0)])
def test_bad_fractions_are_config_errors(val, test):
    with pytest.raises(ConfigError):
        assign_splits(_patients(10), SplitConfig(val_fraction=val, test_fraction=test), classes=CLASSES)


def test_no_train_images():
    with pytest.raises(DataError, match="no train images"):
        assign_splits(_patients(10, split="test"), SplitConfig(), classes=CLASSES)


def test_label_outside_classes():
    with pytest.raises(DataError, match="label 2 is outside the 2 classes"):
        assign_splits([Sample(id="a", label=2)], SplitConfig(), classes=CLASSES)
