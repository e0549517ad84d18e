"""The issue's acceptance scenario on real chest X-rays (../shared/data; skipped when absent): one class re-saved
at another size, and train images re-encoded at JPEG q75 and 90% size into test, with random-weight features."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headstart.studies.audit import AuditConfig, run_audit
from tests.studies.audit.caches import add_meta, extract, plant_copies

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

PER_CLASS = {"train": 110, "test": 40}
N_COPIES = 20


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
    data = _real_subset(shared_data, tmp_path / "data")
    rng = np.random.default_rng(1)
    train = sorted(data.glob("train/*/*.jpeg"))
    planted = plant_copies(data, [train[i] for i in rng.choice(len(train), N_COPIES, replace=False)])
    cache = extract(data, tmp_path / "real.h5", image_size=112)
    add_meta(cache, data)
    report = run_audit(cache, config=AuditConfig(n_boot=300, power_sims=60), progress=False)
    baseline = report.check("metadata_baseline")
    assert baseline.data["auroc"] > 0.9 and baseline.flagged, baseline.message
    found = {frozenset((p["id_a"], p["id_b"])) for p in report.check("near_duplicates").data["pairs"]}
    planted_pairs = {frozenset(p) for p in planted}
    assert planted_pairs <= found, planted_pairs - found
    assert len(found - planted_pairs) <= 3, found - planted_pairs
