"""Shared runs for the apply tests: one phantom set, a float32 and a float16 cache, every head kind, a fine-tune.

Built once per session through the public API (random weights, 32 px, CPU); tests that damage a run copy it first.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

HEAD_KINDS = ("logreg", "linear", "mlp", "knn")


@pytest.fixture(scope="session")
def runs(phantom_dir, tmp_path_factory) -> dict:
    """{"float32": RUNS, "float16": RUNS, "finetune": run folder, "cache32"/"cache16": caches, "data": DATA}."""
    from headstart.api import run_extract, run_finetune, run_heads

    root = tmp_path_factory.mktemp("apply")
    out = {"data": phantom_dir}
    for dtype in ("float32", "float16"):
        cache = root / f"c_{dtype}.h5"
        run_extract(phantom_dir, cache, backbones=["resnet18"], weights="random", image_size=32, batch_size=16,
                    workers=0, feature_dtype=dtype, device="cpu")
        run_heads(cache, root / f"runs_{dtype}", heads=list(HEAD_KINDS), sweep="quick", n_boot=20, device="cpu",
                  progress=False)
        out[dtype], out[f"cache{dtype[-2:]}"] = root / f"runs_{dtype}", cache
    record = run_finetune(phantom_dir, root / "runs_ft", backbone="resnet18", weights="random", epochs=2,
                          batch_size=16, image_size=32, workers=0, patience=0, n_boot=20, deterministic=True,
                          device="cpu")
    out["finetune"] = root / "runs_ft" / record.run_id
    return out


def head_run(runs: dict, dtype: str, kind: str) -> Path:
    return runs[dtype] / f"cached-head_resnet18_{kind}_s0"


def copy_run(run: Path, tmp_path: Path) -> Path:
    """A private copy of a run folder, safe to damage."""
    return Path(shutil.copytree(run, tmp_path / run.name))


def read_table(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def record_vs_table(run: Path, table: list[dict]) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """(record test probabilities, the table's probabilities, the table's rows), matched by id in record order."""
    record = json.loads((run / "record.json").read_text())
    test, classes = record["predictions"]["test"], record["dataset"]["classes"]
    by_id = {row["id"]: row for row in table}
    rows = [by_id[i] for i in test["ids"]]
    got = np.array([[float(row[f"proba_{c}"]) for c in classes] for row in rows])
    return np.array(test["proba"]), got, rows


def record_decisions(run: Path) -> list[str]:
    """The record's test decisions at its frozen threshold, as class names."""
    from headstart.evaluation.metrics import predict

    record = json.loads((run / "record.json").read_text())
    classes = record["dataset"]["classes"]
    decided = predict(np.array(record["predictions"]["test"]["proba"]), record["threshold"])
    return [classes[k] for k in decided]
