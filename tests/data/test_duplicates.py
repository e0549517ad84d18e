"""find_cross_split_duplicates: exact content shared across splits is counted and warned about."""

from __future__ import annotations

import logging
import shutil

import numpy as np

from headstart.data.duplicates import find_cross_split_duplicates
from headstart.data.sources import load_source
from headstart.data.synthetic import make_phantom_dataset


def test_cross_split_copies_are_found(tmp_path, caplog):
    root = make_phantom_dataset(tmp_path / "d", n_train=20, n_test=8, image_size=16)
    train = sorted((root / "train" / "PNEUMONIA").glob("*.jpeg"))
    shutil.copy(train[0], root / "test" / "PNEUMONIA" / "copy_a.jpeg")
    shutil.copy(train[0], root / "val" / "PNEUMONIA" / "copy_b.jpeg")
    shutil.copy(train[1], root / "test" / "NORMAL" / "copy_c.jpeg")  # even under another label
    shutil.copy(train[2], root / "train" / "PNEUMONIA" / "same_split.jpeg")  # within train: not reported
    src = load_source(root)
    with caplog.at_level(logging.WARNING):
        dup = find_cross_split_duplicates(src.samples, src)
    assert dup["n_groups"] == 2 and dup["n_images"] == 5
    assert dup["pairs"] == {"train-test": 2, "train-val": 1, "val-test": 1}
    assert ["train/PNEUMONIA/" + train[0].name, "val/PNEUMONIA/copy_b.jpeg"] in dup["examples"]
    assert "5 image(s) in 2 content group(s) are exact duplicates across splits" in caplog.text


def test_clean_data_reports_zero_and_stays_quiet(tmp_path, caplog):
    src = load_source(make_phantom_dataset(tmp_path / "d", n_train=20, n_test=8, image_size=16))
    with caplog.at_level(logging.WARNING):
        dup = find_cross_split_duplicates(src.samples, src)
    assert dup == {"n_groups": 0, "n_images": 0, "pairs": {}, "examples": []}
    assert "duplicates" not in caplog.text


def test_npz_rows_are_hashed(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (4, 6, 6), dtype=np.uint8)
    test_images = images[:2].copy()
    test_images[1] += 1  # one exact copy, one altered
    np.savez(tmp_path / "x.npz", train_images=images, train_labels=np.array([0, 1, 0, 1]),
             test_images=test_images, test_labels=np.array([0, 1]))
    src = load_source(tmp_path / "x.npz")
    dup = find_cross_split_duplicates(src.samples, src)
    assert dup["pairs"] == {"train-test": 1} and dup["examples"] == [["train/00000", "test/00000"]]
