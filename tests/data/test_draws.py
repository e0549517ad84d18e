"""The training draw of `curve` and `finetune --train-size`: whole patients, stratified, seeded, order-free."""

from __future__ import annotations

import numpy as np
import pytest

from headstart.data.draws import SizeSpec, draw_samples, draw_subsample, ladder, parse_size
from headstart.data.types import Sample
from headstart.errors import ConfigError, DataError


def _pool(n_patients: int = 300, seed: int = 0) -> tuple[list[str], np.ndarray, list[str]]:
    """Patients with 1-4 images each, one label per patient (about 1 : 3), and a few ungrouped images."""
    rng = np.random.default_rng(seed)
    ids, labels, groups = [], [], []
    for p in range(n_patients):
        label = int(rng.random() < 0.75)
        for k in range(int(rng.integers(1, 5))):
            ids.append(f"train/p{p:04d}_{k}.jpeg")
            labels.append(label)
            groups.append(f"p{p:04d}")
    for k in range(20):
        ids.append(f"train/loose{k}.jpeg")
        labels.append(k % 2)
        groups.append("")
    return ids, np.asarray(labels), groups


@pytest.mark.parametrize("size", ["k=1", "k=4", "k=16", "50", "200", "1%", "10%", "50%"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_patient_is_split_between_the_draw_and_the_rest(size, seed):
    ids, labels, groups = _pool()
    draw = draw_subsample(ids, labels, groups, parse_size(size), seed=seed, n_classes=2)
    inside = np.zeros(len(ids), dtype=bool)
    inside[draw.index] = True
    for group in {g for g in groups if g}:
        members = inside[[i for i, g in enumerate(groups) if g == group]]
        assert members.all() or not members.any(), f"patient {group} is split by the {size} draw"
    assert draw.n == len(np.unique(draw.index)) == inside.sum()
    assert draw.n_patients == len({groups[i] or ids[i] for i in draw.index})
    assert list(draw.per_class) == np.bincount(labels[draw.index], minlength=2).tolist()


def test_draws_are_stratified_near_their_targets_and_overshoot_by_less_than_a_patient():
    ids, labels, groups = _pool()
    counts = np.bincount(labels)
    for text in ("k=8", "10%", "300"):
        size = parse_size(text)
        target = size.targets(counts)
        draw = draw_subsample(ids, labels, groups, size, seed=3, n_classes=2)
        got = np.asarray(draw.per_class)
        assert np.all(got >= target), (text, got, target)  # a pass over every patient reaches each target
        assert np.all(got - target <= 3), (text, got, target)  # at most the rest of the last patient (<= 4 images)
    assert parse_size("10%").targets(counts).tolist() == [round(0.1 * counts[0]), round(0.1 * counts[1])]


def test_the_draw_depends_on_ids_and_seed_not_on_row_order():
    ids, labels, groups = _pool()
    size = parse_size("5%")
    a = draw_subsample(ids, labels, groups, size, seed=7, n_classes=2)
    perm = np.random.default_rng(1).permutation(len(ids))
    b = draw_subsample([ids[i] for i in perm], labels[perm], [groups[i] for i in perm], size, seed=7, n_classes=2)
    assert sorted(ids[i] for i in a.index) == sorted(ids[perm[i]] for i in b.index)
    c = draw_subsample(ids, labels, groups, size, seed=8, n_classes=2)
    assert set(a.index.tolist()) != set(c.index.tolist())  # another seed, another draw


def test_the_whole_split_is_one_draw_for_every_seed():
    ids, labels, groups = _pool(50)
    full = [draw_subsample(ids, labels, groups, parse_size("100%"), seed=s, n_classes=2) for s in (0, 5)]
    assert all(d.n == len(ids) for d in full) and full[0].index.tolist() == full[1].index.tolist()


def test_a_draw_too_small_for_every_class_names_the_missing_one():
    ids = [f"i{k}" for k in range(100)]
    labels = np.array([0] * 98 + [1] * 2)
    draw = draw_subsample(ids, labels, [""] * 100, parse_size("1%"), seed=0, n_classes=2)
    assert draw.missing == (1,) and draw.per_class[1] == 0
    samples = [Sample(id=i, label=int(y), split="train") for i, y in zip(ids, labels)]
    with pytest.raises(DataError, match="no image of class"):
        draw_samples(samples, parse_size("1%"), seed=0, n_classes=2)
    kept, draw = draw_samples(samples, parse_size("k=1"), seed=0, n_classes=2)
    assert sorted(s.label for s in kept) == [0, 1] and draw.missing == ()


@pytest.mark.parametrize("text, kind, value, label", [
    ("k=4", "per_class", 4, "k=4"), ("K = 16", "per_class", 16, "k=16"), ("250", "count", 250, "250"),
    ("10%", "fraction", 0.1, "10%"), ("2.5%", "fraction", 0.025, "2.5%"), (0.25, "fraction", 0.25, "25%"),
    ("100%", "fraction", 1.0, "100%"),
])
def test_sizes_parse_from_the_command_line_forms(text, kind, value, label):
    size = parse_size(text)
    assert (size.kind, size.value, size.label) == (kind, pytest.approx(value), label)
    assert parse_size(size.label) == size


@pytest.mark.parametrize("text", ["k=0", "0", "150%", "0%", "ten", "k=", "-3", 1.5])
def test_bad_sizes_are_config_errors(text):
    with pytest.raises(ConfigError):
        parse_size(text)


def test_default_ladder_doubles_k_per_class_then_takes_fractions_up_to_the_whole_split():
    sizes = ladder(3650, 2)
    assert [s.label for s in sizes] == ["k=1", "k=2", "k=4", "k=8", "k=16", "1%", "2%", "5%", "10%", "25%", "50%",
                                        "100%"]
    small = ladder(120, 2)  # 1% of 120 is 1 image: k=1 alone, then the fractions above it
    assert small[0] == SizeSpec("per_class", 1.0) and small[-1].full
    assert all(s.kind == "fraction" for s in small[1:])
