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
                manifest_hash: str = "a" * 64, test_ids: list[str] | None = None,
                test_groups: list[str] | None = None) -> RunRecord:
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
                 "test": evaluate(y_test, p_test, threshold=threshold, n_boot=50, seed=seed, groups=test_groups)},
        history=history,
        timing={"extract_seconds": 0.0 if finetune else EXTRACT_SECONDS[backbone],
                "train_seconds": FINETUNE_SECONDS[backbone] if finetune else HEAD_SECONDS[head] * (1 + 0.1 * seed),
                "eval_seconds": 3.0 if finetune else 0.01, "images_per_second": 100.0, "peak_memory_mb": 500.0,
                "device": "cpu"},
        predictions={"test": {"ids": ids, "y_true": y_test, "proba": p_test,
                              **({"groups": test_groups} if test_groups is not None else {})},
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


CURVE_SIZES = (("k=2", 4), ("k=8", 16), ("10%", 36), ("25%", 90), ("50%", 180), ("100%", 360))


def write_curve(runs_dir: Path, *, backbone: str = "resnet18", head: str = "logreg", manifest_hash: str = "a" * 64,
                plateau: float = 0.9) -> dict:
    """A curve.json as `headstart curve` writes it: 3 draws per size on a power law with a known plateau."""
    import json

    from headstart.studies.curve import summarise
    from headstart.evaluation.curve_doc import CURVE_FORMAT, CURVE_FORMAT_VERSION, CURVE_NAME
    from headstart.evaluation.curve_fit import fit_power_law

    rng = np.random.default_rng(3)
    points = []
    for size, n in CURVE_SIZES:
        for repeat in range(1 if size == "100%" else 3):
            auroc = plateau - 0.5 * n ** -0.6 + rng.normal(0, 0.005)
            test = {"auroc": auroc, "auroc_ci": [auroc - 0.03, auroc + 0.03], "accuracy": auroc - 0.05}
            points.append({"size": size, "n_train": n + repeat, "n_patients": n // 2, "per_class": [n // 2, n // 2],
                           "repeat": repeat, "seed": repeat, "train_seconds": 0.01,
                           "metrics": {"val": dict(test), "test": test}})
    summary = summarise(points, [size for size, _ in CURVE_SIZES])
    fit, reason = fit_power_law([s["n_train"] for s in summary], [s["test"]["auroc"]["mean"] for s in summary])
    document = {"format": CURVE_FORMAT, "format_version": CURVE_FORMAT_VERSION, "feature_set": backbone,
                "backbone": backbone, "head": head, "metric": "auroc",
                "dataset": {"manifest_hash": manifest_hash, "classes": ["NORMAL", "PNEUMONIA"], "cache": "/c.h5"},
                "config": {"repeats": 3, "sweep": "quick"}, "splits": {"train": 360, "val": 40, "test": 80},
                "points": points, "summary": summary, "fit": fit, "fit_reason": reason, "notes": []}
    path = runs_dir / f"curve_{backbone}_{head}" / CURVE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1), encoding="utf-8")
    return document


def write_subsampled_finetunes(runs_dir: Path, *, backbone: str = "resnet18", manifest_hash: str = "a" * 64,
                               sizes: tuple[tuple[str, int, float], ...] = (("k=8", 16, 0.2), ("50%", 180, 4.0)),
                               ) -> list[RunRecord]:
    """Fine-tunes on training draws (`--train-size`), two seeds each, with a chosen separation per size."""
    from headstart.data.draws import parse_size

    records = []
    for size, n, strength in sizes:
        for seed in (0, 1):
            record = make_record(strategy="finetune", backbone=backbone, head=None, seed=seed, strength=strength,
                                 manifest_hash=manifest_hash)
            record.run_id = make_run_id("finetune", backbone, None, seed,
                                        variant=f"freeze-none-64px-train-{parse_size(size).slug}")
            record.config.update(train_size=size, n_train=n + seed, draw_seed=seed)
            write_record(runs_dir, record)
            records.append(record)
    return records
