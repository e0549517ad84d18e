"""`run_heads` end to end on tiny synthetic caches: records, selection on val, frozen threshold, bad input."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest

from headstart.errors import ConfigError
from headstart.evaluation.records import RECORD_NAME, read_records
from headstart.heads.runner import HeadsConfig, run_heads
from headstart.heads.summary import summary_table
from tests.heads.synthetic_cache import make_cache

FAST = dict(sweep="quick", n_boot=50, device="cpu")


@pytest.fixture(scope="module")
def cache_path(tmp_path_factory):
    return make_cache(tmp_path_factory.mktemp("cache") / "c.h5", invalid=frozenset({0, 5}))


@pytest.fixture(scope="module")
def first_run(cache_path, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    return runs, run_heads(cache_path=cache_path, runs_dir=runs, config=HeadsConfig(**FAST), progress=False)


def test_records_hold_the_contract(first_run, cache_path):
    runs, records = first_run
    assert sorted(r.head for r in records) == ["knn", "linear", "logreg", "mlp"]
    for record in records:
        data = json.loads((runs / record.run_id / RECORD_NAME).read_text())
        assert data["strategy"] == "cached-head" and data["backbone"] == "resnet18"
        assert data["config"]["feature_set"] == "resnet18" and data["config"]["sweep"] == "quick"
        for split in ("val", "test"):
            for name in ("auroc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1"):
                assert isinstance(data["metrics"][split][name], float)
                low, high = data["metrics"][split][f"{name}_ci"]
                assert low <= data["metrics"][split][name] <= high
        assert data["metrics"]["test"]["auroc"] > 0.75  # the blobs are learnable
        timing = data["timing"]
        assert timing["train_seconds"] > 0 and timing["eval_seconds"] > 0 and timing["extract_seconds"] == 12.5
        assert timing["peak_memory_mb"] > 0 and timing["device"]
        test = data["predictions"]["test"]
        assert len(test["ids"]) == len(test["y_true"]) == len(test["proba"]) == 36
        if record.head in ("linear", "mlp"):
            assert data["history"] and {"train_loss", "val_loss", "train_accuracy", "val_accuracy"} <= set(data["history"][0])
    assert len(read_records(runs)) == 4


def test_invalid_rows_are_dropped(first_run):
    _, records = first_run
    for record in records:
        ids = record.predictions["val"]["ids"] + record.predictions["test"]["ids"]
        assert "img/0000.png" not in ids and "img/0005.png" not in ids


def test_selection_on_val_and_frozen_threshold(first_run):
    _, records = first_run
    for record in records:
        scores = [s["auroc"] for s in record.config["sweep_scores"]]
        assert len(scores) == record.config["grid_size"] > 1
        best = scores.index(max(scores))
        chosen = record.config["sweep_scores"][best]
        assert all(record.config[k] == v for k, v in chosen.items() if k != "auroc")
        assert record.metrics["val"]["auroc"] == pytest.approx(max(scores))
        val = record.predictions["val"]
        y_val, p_val = np.array(val["y_true"]), np.array(val["proba"])[:, 1]
        # Youden's J by brute force over every val cut: the frozen threshold achieves the best J on val ...
        def youden(t: float) -> float:
            pred = p_val >= t
            return pred[y_val == 1].mean() + (~pred[y_val == 0]).mean() - 1

        assert youden(record.threshold) == pytest.approx(max(youden(t) for t in np.unique(p_val)))
        # ... and sits midway between two neighbouring val scores: it was placed on val, never on test
        scores = np.unique(p_val)
        below, above = scores[scores < record.threshold].max(), scores[scores >= record.threshold].min()
        assert record.threshold == pytest.approx((below + above) / 2)
        assert record.metrics["test"]["threshold"] == pytest.approx(record.threshold)  # frozen, not re-chosen
        test = record.predictions["test"]
        pred = (np.array(test["proba"])[:, 1] >= record.threshold).astype(int)
        assert record.metrics["test"]["accuracy"] == pytest.approx((pred == np.array(test["y_true"])).mean())


def test_deterministic(first_run, cache_path, tmp_path):
    runs, records = first_run
    run_heads(cache_path=cache_path, runs_dir=tmp_path, config=HeadsConfig(**FAST), progress=False)
    for record in records:
        a = json.loads((runs / record.run_id / RECORD_NAME).read_text())
        b = json.loads((tmp_path / record.run_id / RECORD_NAME).read_text())
        for data in (a, b):
            data.pop("timing"), data.pop("created")
        assert a == b, record.run_id


def test_seeds_and_summary(cache_path, tmp_path):
    records = run_heads(cache_path=cache_path, runs_dir=tmp_path,
                        config=HeadsConfig(heads=["logreg", "linear"], seeds=2, **FAST), progress=False)
    assert sorted((r.head, r.seed) for r in records) == [("linear", 0), ("linear", 1), ("logreg", 0), ("logreg", 1)]
    logreg = [r for r in records if r.head == "logreg"]
    assert all(r.config["fit_shared_across_seeds"] for r in logreg)  # the seed cannot change an lbfgs fit
    linear = [r for r in records if r.head == "linear"]
    assert linear[0].predictions["test"]["proba"] != linear[1].predictions["test"]["proba"]
    table = summary_table(records)
    assert "±" in table and "linear ×2" in table and "logreg ×2" in table


def test_empty_val_falls_back_to_cross_validation(tmp_path, caplog):
    path = make_cache(tmp_path / "noval.h5", split_cycle=("train", "train", "train", "test"))
    with caplog.at_level(logging.WARNING, logger="headstart"):
        records = run_heads(cache_path=path, runs_dir=tmp_path / "runs",
                            config=HeadsConfig(heads=["logreg", "mlp"], **FAST), progress=False)
    assert "val split is empty" in caplog.text and "cross-validation" in caplog.text
    for record in records:
        assert record.config["selection"] == "cv-5fold"
        assert len(record.config["sweep_scores"]) == record.config["grid_size"]  # every config scored out of fold
        assert 20 <= len(record.predictions["val"]["ids"]) <= 34  # the applied model's held-out fifth of 135
        assert record.metrics["test"]["auroc"] > 0.75
    mlp = next(r for r in records if r.head == "mlp")
    assert 1 <= mlp.config["best_epoch"] <= len(mlp.history)  # stopped early on the held-out fifth


def test_one_class_test_split_gives_nan_auroc(tmp_path, caplog):
    path = make_cache(tmp_path / "oneclass.h5", test_label=1)
    with caplog.at_level(logging.WARNING, logger="headstart"):
        records = run_heads(cache_path=path, runs_dir=tmp_path / "runs",
                            config=HeadsConfig(heads=["logreg"], **FAST), progress=False)
    assert math.isnan(records[0].metrics["test"]["auroc"])
    assert not math.isnan(records[0].metrics["test"]["sensitivity"])
    assert "undefined" in caplog.text
    assert json.loads((tmp_path / "runs" / records[0].run_id / RECORD_NAME).read_text())["metrics"]["test"]["auroc"] is None


def test_multiclass(tmp_path):
    path = make_cache(tmp_path / "three.h5", n=240, n_classes=3)
    records = run_heads(cache_path=path, runs_dir=tmp_path / "runs",
                        config=HeadsConfig(heads=["logreg", "linear", "knn"], select_metric="balanced_accuracy", **FAST),
                        progress=False)
    for record in records:
        assert record.threshold is None and record.config["threshold_rule"] is None
        assert np.array(record.predictions["test"]["proba"]).shape == (48, 3)
        assert record.metrics["test"]["balanced_accuracy"] > 0.6


def test_feature_sets_default_to_complete_ones(tmp_path):
    from tests.heads.synthetic_cache import corrupt

    path = make_cache(tmp_path / "two.h5", sets=("resnet18", "densenet121"))
    corrupt(path, "densenet121", incomplete=True)
    records = run_heads(cache_path=path, runs_dir=tmp_path / "runs", config=HeadsConfig(heads=["knn"], **FAST),
                        progress=False)
    assert [r.config["feature_set"] for r in records] == ["resnet18"]


@pytest.mark.parametrize("field, value, needle", [
    ("heads", ["logreg", "svm"], "unknown head svm; expected one or more of logreg, linear, mlp, knn"),
    ("select_metric", "precision", "unknown select metric 'precision'; expected one of auroc"),
    ("threshold_rule", "youdn", "unknown threshold rule"),
    ("sweep", "huge", "unknown sweep 'huge'"),
])
def test_config_errors(cache_path, tmp_path, field, value, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")) as info:
        run_heads(cache_path=cache_path, runs_dir=tmp_path, config=HeadsConfig(**{**FAST, field: value}), progress=False)
    assert "\n" not in str(info.value)
