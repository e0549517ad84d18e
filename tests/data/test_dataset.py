"""build_dataset and manifest_hash: the entry point extract and finetune call."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import replace

import pytest

from headstart.data.dataset import build_dataset, manifest_hash
from headstart.data.synthetic import make_npz, make_phantom_dataset
from headstart.data.types import SPLITS, SplitConfig
from tests.data.sample_files import shared_data


def test_build_dataset_on_the_kaggle_layout(tmp_path, caplog):
    root = make_phantom_dataset(tmp_path / "d", n_train=240, n_test=20, image_size=16)
    with caplog.at_level(logging.INFO, logger="headstart"):
        ds = build_dataset(root, split_config=SplitConfig())
    assert ds.classes == ["NORMAL", "PNEUMONIA"] and ds.source.kind == "split-folder"
    assert {s.split for s in ds.samples} == set(SPLITS)
    assert sum(s.split == "test" for s in ds.samples) == 20  # given test untouched
    assert sum(s.split == "val" for s in ds.samples) > 16  # tiny val topped up to ~10% of 256
    assert ds.duplicates["n_groups"] == 0
    summary = [r.message for r in caplog.records if "(split-folder): train" in r.message]
    assert len(summary) == 1 and "| val " in summary[0] and "NORMAL" in summary[0]


def test_build_dataset_passes_the_group_pattern(tmp_path):
    ds = build_dataset(make_phantom_dataset(tmp_path / "d", n_train=20, n_test=8, image_size=16),
                       split_config=SplitConfig(group_pattern=r"^(person\d+)"))
    groups = {s.group for s in ds.samples}
    assert "" in groups and any(g.startswith("person") for g in groups)  # NORMAL files no longer match


def test_build_dataset_on_npz_without_test(tmp_path):
    ds = build_dataset(make_npz(tmp_path / "x.npz", n_train=50, n_val=0, n_test=0), split_config=SplitConfig())
    assert sum(s.split == "test" for s in ds.samples) == 10
    carved = next(s for s in ds.samples if s.split == "test")
    assert carved.id.startswith("train/") and ds.source.load(carved).size == (28, 28)  # row still found


def test_manifest_hash_tracks_ids_labels_splits_groups_and_classes(tmp_path):
    root = make_phantom_dataset(tmp_path / "d", n_train=40, n_test=10, image_size=16, val=0)
    ds = build_dataset(root, split_config=SplitConfig(seed=0))
    base = manifest_hash(ds.samples, ds.classes)
    assert len(base) == 64 and base == manifest_hash(list(ds.samples), list(ds.classes))
    assert base == manifest_hash(build_dataset(root, split_config=SplitConfig(seed=0)).samples, ds.classes)
    resplit = build_dataset(root, split_config=SplitConfig(seed=1))
    assert manifest_hash(resplit.samples, resplit.classes) != base  # re-splitting changes it
    assert manifest_hash(ds.samples, ["A", "B"]) != base
    changed = [replace(ds.samples[0], group="other")] + ds.samples[1:]
    assert manifest_hash(changed, ds.classes) != base
    assert manifest_hash(ds.samples[::-1], ds.classes) != base  # row order is part of the cache


@pytest.mark.realdata
def test_real_kaggle_224_resplit_keeps_patients_together():
    ds = build_dataset(shared_data("kaggle_cxr_224"), split_config=SplitConfig())
    counts = Counter(s.split for s in ds.samples)
    assert counts["test"] == round(0.2 * 5216) and abs(counts["val"] - 0.1 * (5216 - counts["test"])) < 15
    splits_of = defaultdict(set)
    for s in ds.samples:
        splits_of[s.group].add(s.split)
    assert all(len(v) == 1 for v in splits_of.values())
