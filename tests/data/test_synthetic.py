"""The phantom generator: layout, Kaggle-like names and ratio, and a learnable class difference."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from headstart.data.groups import group_from_name
from headstart.data.synthetic import make_phantom_dataset


def _files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_layout_counts_names_and_ds_store(tmp_path):
    root = make_phantom_dataset(tmp_path / "d", n_train=117, n_test=39, image_size=32)
    files = [p for p in _files(root) if p.name != ".DS_Store"]
    counts = Counter(p.relative_to(root).parts[:2] for p in files)
    assert counts == {("train", "NORMAL"): 30, ("train", "PNEUMONIA"): 87, ("val", "NORMAL"): 8,
                      ("val", "PNEUMONIA"): 8, ("test", "NORMAL"): 10, ("test", "PNEUMONIA"): 29}
    assert (root / "train" / "NORMAL" / ".DS_Store").exists()
    kaggle = re.compile(r"^((NORMAL2-)?IM-\d{4}-\d{4}|person\d+_(bacteria|virus)_\d+)\.jpeg$")
    assert all(kaggle.match(p.name) for p in files)
    groups = Counter(group_from_name(p.stem) for p in files)
    assert all(groups) and max(groups.values()) > 1  # every file has a patient, some patients repeat
    split_of_group = {}
    for p in files:
        split_of_group.setdefault(group_from_name(p.stem), set()).add(p.relative_to(root).parts[0])
    assert all(len(v) == 1 for v in split_of_group.values())  # patients never span splits
    with open(files[0], "rb") as fh:
        assert fh.read(2) == b"\xff\xd8"  # JPEG


def test_val_zero_omits_the_folder_and_seed_is_deterministic(tmp_path):
    a = make_phantom_dataset(tmp_path / "a", n_train=10, n_test=4, image_size=16, val=0, seed=3)
    b = make_phantom_dataset(tmp_path / "b", n_train=10, n_test=4, image_size=16, val=0, seed=3)
    assert not (a / "val").exists()
    assert [p.read_bytes() for p in _files(a)] == [p.read_bytes() for p in _files(b)]


def test_classes_differ_in_lung_opacity(tmp_path):
    from PIL import Image

    root = make_phantom_dataset(tmp_path / "d", n_train=60, n_test=0, image_size=32, val=0)
    means = {"NORMAL": [], "PNEUMONIA": []}
    for p in _files(root):
        if p.suffix == ".jpeg":
            lungs = np.asarray(Image.open(p), dtype=float)[8:24, 4:28]  # the lung band
            means[p.parent.name].append(lungs.mean())
    normal, pneumonia = np.array(means["NORMAL"]), np.array(means["PNEUMONIA"])
    auroc = (pneumonia[:, None] > normal[None, :]).mean()  # Mann-Whitney estimate
    assert auroc > 0.75
