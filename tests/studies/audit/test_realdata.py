"""The issue's acceptance scenario on real chest X-rays (../shared/data; skipped when absent): one class re-saved
at another size, and train images re-encoded at JPEG q75 and 90% size into test, with random-weight features."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from headstart.cli import cli
from tests.studies.audit.caches import plant_copies

pytestmark = pytest.mark.realdata

PER_CLASS = {"train": 60, "test": 25}
N_COPIES = 15
IMAGE_SIZE = 64  # tiny inputs keep the test quick; the rule's pixel evidence does not depend on them


def _real_subset(shared: Path, out: Path, *, seed: int = 0) -> Path:
    """A Kaggle-layout folder of real 224 px X-rays: NORMAL linked as is, PNEUMONIA re-saved at 256 px."""
    rng = np.random.default_rng(seed)
    for cls in ("NORMAL", "PNEUMONIA"):
        files = sorted((shared / "kaggle_cxr_224" / "train" / cls).glob("*.jpeg"))
        chosen = [files[i] for i in rng.choice(len(files), sum(PER_CLASS.values()), replace=False)]
        start = 0
        for split, n in PER_CLASS.items():
            folder = out / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for src in chosen[start:start + n]:
                if cls == "PNEUMONIA":  # the size shortcut
                    Image.open(src).convert("L").resize((256, 256), Image.Resampling.BILINEAR).save(
                        folder / src.name, "JPEG", quality=90)
                else:
                    os.symlink(src, folder / src.name)
            start += n
    return out


def test_planted_shortcut_and_copies_on_real_xrays(shared_data, tmp_path):
    """Through the CLI: `extract` records the metadata, `audit --json` finds the shortcut and every planted copy."""
    data = _real_subset(shared_data, tmp_path / "data")
    rng = np.random.default_rng(1)
    train = sorted(data.glob("train/*/*.jpeg"))
    planted = plant_copies(data, [train[i] for i in rng.choice(len(train), N_COPIES, replace=False)])
    cache = tmp_path / "real.h5"
    run = CliRunner().invoke(cli, ["extract", str(data), "-o", str(cache), "--weights", "random", "--image-size",
                                   str(IMAGE_SIZE), "--batch-size", "32", "--workers", "0"])
    assert run.exit_code == 0, run.output
    audit = CliRunner().invoke(cli, ["audit", str(cache), "--json", "--shuffle-repeats", "2"])
    assert audit.exit_code == 0, audit.output
    doc = json.loads(audit.stdout)
    baseline = doc["metadata_baseline"]
    assert baseline["auroc"] > 0.9 and baseline["flagged"], baseline["message"]
    found = {frozenset((p["id_a"], p["id_b"])) for p in doc["near_duplicates"]}
    planted_pairs = {frozenset(p) for p in planted}
    assert planted_pairs <= found, planted_pairs - found
    assert len(found - planted_pairs) <= 3, found - planted_pairs
