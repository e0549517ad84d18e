"""Synthetic run records: 2 backbones x (logreg and linear cached heads with 2 seeds + one fine-tune)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from headstart.evaluation.bootstrap import evaluate
from headstart.evaluation.records import RunRecord, make_run_id, write_record
from headstart.evaluation.thresholds import choose_threshold

N_TEST, N_VAL = 80, 40
EXTRACT_SECONDS = {"resnet18": 12.0, "densenet121": 30.0}
FINETUNE_SECONDS = {"resnet18": 240.0, "densenet121": 600.0}
HEAD_SECONDS = {"logreg": 0.5, "linear": 1.5}


def _scores(y: np.ndarray, *, strength: float, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) probabilities whose positive column separates the classes by `strength`."""
    logit = strength * (2 * y - 1) + rng.normal(0, 1, size=y.size)
    p = 1 / (1 + np.exp(-logit))
    return np.stack([1 - p, p], axis=1)


def make_record(*, strategy: str, backbone: str, head: str | None, seed: int, strength: float,
                manifest_hash: str = "a" * 64, test_ids: list[str] | None = None) -> RunRecord:
    rng = np.random.default_rng(zlib.crc32(f"{strategy}{backbone}{head}{seed}{manifest_hash}".encode()))
    label_rng = np.random.default_rng(7)  # the same labels for every run: one shared test split
    y_test = label_rng.integers(0, 2, N_TEST)
    y_val = label_rng.integers(0, 2, N_VAL)
    ids = test_ids or [f"test/img{i:04d}.jpeg" for i in range(N_TEST)]
    p_val, p_test = _scores(y_val, strength=strength, rng=rng), _scores(y_test, strength=strength, rng=rng)
    threshold = choose_threshold(y_val, p_val[:, 1])
    finetune = strategy == "finetune"
    variant = "freeze-none-64px" if finetune else None
    history = [{"epoch": e + 1, "train_loss": 0.7 / (e + 1), "val_loss": 0.75 / (e + 1) + 0.05,
                "train_accuracy": 0.6 + 0.1 * e, "val_accuracy": 0.58 + 0.08 * e} for e in range(3)] if finetune else []
    return RunRecord(
        run_id=make_run_id(strategy, backbone, head, seed, variant=variant),
        strategy=strategy, backbone=backbone, head=head,
        config={"freeze": "none", "image_size": 64} if finetune else {"C": 1.0},
        metrics={"val": evaluate(y_val, p_val, threshold=threshold, n_boot=50, seed=seed),
                 "test": evaluate(y_test, p_test, threshold=threshold, n_boot=50, seed=seed)},
        history=history,
        timing={"extract_seconds": 0.0 if finetune else EXTRACT_SECONDS[backbone],
                "train_seconds": FINETUNE_SECONDS[backbone] if finetune else HEAD_SECONDS[head] * (1 + 0.1 * seed),
                "eval_seconds": 3.0 if finetune else 0.01, "images_per_second": 100.0, "peak_memory_mb": 500.0,
                "device": "cpu"},
        predictions={"test": {"ids": ids, "y_true": y_test, "proba": p_test},
                     "val": {"ids": [f"val/{i}" for i in range(N_VAL)], "y_true": y_val, "proba": p_val}},
        threshold=threshold, seed=seed,
        dataset={"manifest_hash": manifest_hash, "classes": ["NORMAL", "PNEUMONIA"], "data": "/data/phantoms"},
    )


def write_study(runs_dir: Path, *, manifest_hash: str = "a" * 64) -> list[RunRecord]:
    records = []
    for backbone, base in (("resnet18", 1.2), ("densenet121", 1.5)):
        for head, bump in (("logreg", 0.0), ("linear", 0.3)):
            for seed in (0, 1):
                records.append(make_record(strategy="cached-head", backbone=backbone, head=head, seed=seed,
                                           strength=base + bump, manifest_hash=manifest_hash))
        records.append(make_record(strategy="finetune", backbone=backbone, head=None, seed=0, strength=base + 0.6,
                                   manifest_hash=manifest_hash))
    for record in records:
        write_record(runs_dir, record)
    return records


@pytest.fixture
def study(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    write_study(runs)
    return runs
