"""record.json: round trip, atomic strict-JSON writes, determinism, and reading a runs folder."""

import json
import logging
import math

import numpy as np
import pytest

from headstart.errors import DataError
from headstart.evaluation.bootstrap import evaluate
from headstart.evaluation.records import RunRecord, make_run_id, read_records, record_json, write_record


def _record(seed: int = 0) -> RunRecord:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 30)
    proba = rng.dirichlet([1, 1], 30)
    test = evaluate(y, proba, threshold=0.5, n_boot=50)
    return RunRecord(
        run_id=make_run_id("cached-head", "resnet18", "logreg", seed),
        strategy="cached-head",
        backbone="resnet18",
        head="logreg",
        config={"C": 0.1, "class_weight": "balanced"},
        metrics={"val": evaluate(np.zeros(5, int), proba[:5], threshold=0.5, n_boot=20), "test": test},
        history=[],
        timing={"train_seconds": 0.5, "device": "cpu"},
        predictions={"test": {"ids": [f"img{i}" for i in range(30)], "y_true": y, "proba": proba.astype(np.float32)}},
        threshold=0.5,
        seed=seed,
        dataset={"manifest_hash": "abc", "classes": ["NORMAL", "PNEUMONIA"]},
        created="2026-01-01T00:00:00+00:00",
        versions={"numpy": "2"},
    )


def test_run_ids_are_readable_and_deterministic():
    assert make_run_id("cached-head", "resnet18", "logreg", 0) == "cached-head_resnet18_logreg_s0"
    assert make_run_id("finetune", "densenet121", None, 2, variant="freeze partial") == (
        "finetune_densenet121_freeze-partial_s2"
    )
    assert make_run_id("finetune", "resnet18", None, 1) == make_run_id("finetune", "resnet18", None, 1)


def test_round_trip_nan_as_null_and_no_tmp_left(tmp_path):
    record = _record()
    path = write_record(tmp_path, record)
    assert path == tmp_path / "cached-head_resnet18_logreg_s0" / "record.json"
    assert [p.name for p in path.parent.iterdir()] == ["record.json"]  # the temporary file was renamed
    raw = json.loads(path.read_text(), parse_constant=lambda token: pytest.fail(f"non-strict JSON {token}"))
    assert raw["metrics"]["val"]["auroc"] is None and raw["metrics"]["val"]["auroc_ci"] == [None, None]
    assert raw["metrics"]["test"]["auroc_ci"][0] <= raw["metrics"]["test"]["auroc"]
    (back,) = read_records(tmp_path)
    assert math.isnan(back.metrics["val"]["auroc"])
    assert record_json(back) == path.read_text()
    assert back.predictions["test"]["proba"][0] == pytest.approx(record.predictions["test"]["proba"][0].tolist())


def test_identical_inputs_give_identical_bytes(tmp_path):
    first = write_record(tmp_path / "a", _record()).read_bytes()
    second = write_record(tmp_path / "b", _record()).read_bytes()
    assert first == second
    rerun = write_record(tmp_path / "a", _record())  # same id: a rerun replaces the record
    assert rerun.read_bytes() == first and len(list((tmp_path / "a").iterdir())) == 1


def test_write_fills_created_and_versions(tmp_path):
    record = _record()
    record.created, record.versions = "", {}
    data = json.loads(write_record(tmp_path, record).read_text())
    assert data["created"].startswith("20") and "numpy" in data["versions"]


def test_read_records_skips_bad_files_with_one_warning_each(tmp_path, caplog):
    for seed in (0, 1):
        write_record(tmp_path, _record(seed))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "record.json").write_text('{"run_id": "x", "strat')  # a partial write
    (tmp_path / "alien").mkdir()
    (tmp_path / "alien" / "record.json").write_text('{"hello": 1}')
    with caplog.at_level(logging.WARNING, logger="headstart.evaluation.records"):
        records = read_records(tmp_path)
    assert [r.seed for r in records] == [0, 1]
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "headstart.evaluation.records" and r.levelno >= logging.WARNING]
    assert len(warnings) == 2 and all("\n" not in w for w in warnings)
    assert any("broken" in w for w in warnings) and any("alien" in w for w in warnings)


def test_read_records_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_records(tmp_path / "missing")
    with pytest.raises(DataError, match="no record.json under .*headstart heads"):
        read_records(tmp_path)


def test_unknown_strategy_is_refused(tmp_path):
    record = _record()
    record.strategy = "magic"
    with pytest.raises(DataError, match="cached-head"):
        write_record(tmp_path, record)
