"""finish_run (the one way every strategy finishes) and the val selection both strategies use."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from headstart.errors import ConfigError
from headstart.evaluation.finish import FinalEvaluation, RunOutline, SplitPredictions, finish_run
from headstart.evaluation.selection import best_index, larger_is_better, val_score


def _split(n: int, n_classes: int, seed: int, prefix: str) -> SplitPredictions:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    proba = rng.dirichlet(np.ones(n_classes), n)
    proba[np.arange(n), y] += 0.5  # some signal, so thresholds and AUROC are not degenerate
    return SplitPredictions([f"{prefix}{i}" for i in range(n)], y, proba / proba.sum(axis=1, keepdims=True))


def _outline(**overrides) -> RunOutline:
    fields = dict(run_id="cached-head_set_logreg_s3", strategy="cached-head", backbone="resnet18", head="logreg",
                  seed=3, config={"C": 1.0}, dataset={"classes": ["a", "b"]}, history=[{"epoch": 1}],
                  timing={"train_seconds": 1.5, "extract_seconds": 2.0})
    return RunOutline(**{**fields, **overrides})


# val: negatives 0.1 0.2 0.3 0.6, positives 0.4 0.7 0.8 0.9. sensitivity:0.75 -> the highest cut reaching 3/4 of
# the positives is p >= 0.7; midway to the next val score (0.6) gives 0.65. Val at 0.65: sensitivity 3/4,
# specificity 1. Test at the frozen 0.65: predictions 0 1 0 1 for labels 0 0 1 1 -> sensitivity 1/2, specificity
# 1/2, accuracy 1/2 (a threshold re-chosen on test for sensitivity 0.75 would sit below 0.64 instead).
VAL_Y, VAL_P = np.array([0, 0, 0, 0, 1, 1, 1, 1]), np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
TEST_Y, TEST_P = np.array([0, 0, 1, 1]), np.array([0.5, 0.66, 0.64, 0.9])


def _binary(y, p, prefix: str, groups=None) -> SplitPredictions:
    return SplitPredictions([f"{prefix}{i}" for i in range(len(y))], y, np.stack([1 - p, p], axis=1), groups)


def test_binary_threshold_is_chosen_on_val_and_frozen_for_test(tmp_path):
    splits = {"val": _binary(VAL_Y, VAL_P, "v"), "test": _binary(TEST_Y, TEST_P, "t", groups=["a", "a", "b", ""])}
    calls = []

    def predict():
        calls.append(1)
        time.sleep(0.05)  # the timer covers prediction
        return splits

    record = finish_run(predict, outline=_outline(), runs_dir=tmp_path,
                        final=FinalEvaluation(threshold_rule="sensitivity:0.75", n_boot=30))
    assert calls == [1]  # test is predicted once
    assert record.threshold == pytest.approx(0.65)
    val, test = record.metrics["val"], record.metrics["test"]
    assert (val["sensitivity"], val["specificity"]) == (0.75, 1.0)
    assert val["threshold_rule"] == {"rule": "sensitivity:0.75", "target": 0.75, "achieved": 0.75, "reached": True}
    assert (test["sensitivity"], test["specificity"], test["accuracy"]) == (0.5, 0.5, 0.5)
    assert test["auroc"] == 0.75 and "threshold_rule" not in test  # 3 of 4 (positive, negative) pairs ordered
    assert (test["ci_method"], test["n_clusters"]) == ("cluster-bootstrap", 3)  # patients a, b, one blank image
    assert (val["ci_method"], val["n_clusters"]) == ("bootstrap", 8)
    assert record.predictions["test"]["groups"] == ["a", "a", "b", ""] and "groups" not in record.predictions["val"]
    assert record.predictions["test"]["ids"] == ["t0", "t1", "t2", "t3"]
    assert record.timing["eval_seconds"] >= 0.05
    assert record.timing["train_seconds"] == 1.5 and record.timing["device"] == "cpu"
    assert record.timing["peak_memory_mb"] > 0
    assert (record.run_id, record.seed, record.history) == ("cached-head_set_logreg_s3", 3, [{"epoch": 1}])
    written = json.loads((tmp_path / record.run_id / "record.json").read_text())
    assert written["threshold"] == pytest.approx(0.65) and written["config"] == {"C": 1.0}
    assert written["metrics"]["test"]["sensitivity"] == 0.5


def test_multiclass_has_no_threshold_and_a_non_writing_rank_writes_nothing(tmp_path):
    splits = {"val": _split(30, 3, 2, "v"), "test": _split(30, 3, 3, "t")}
    record = finish_run(lambda: splits, outline=_outline(head=None, strategy="finetune"), runs_dir=tmp_path,
                        final=FinalEvaluation(threshold_rule="youden", n_boot=10, write=False))
    assert record.threshold is None and math.isnan(record.metrics["test"]["threshold"])
    assert not any(tmp_path.iterdir())


def test_val_score_uses_the_candidates_own_threshold():
    """On VAL: the f1-best cut is p >= 0.4 (4 true positives, 1 false positive: F1 = 8/9; the fixed 0.5 gives 3 and 1:
    6/8); AUROC is 15/16 (0.4 is above three of the four negatives)."""
    proba = np.stack([1 - VAL_P, VAL_P], axis=1)
    assert val_score(VAL_Y, proba, metric="f1", threshold_rule="f1") == pytest.approx(8 / 9)
    assert val_score(VAL_Y, proba, metric="f1", threshold_rule="fixed:0.5") == pytest.approx(6 / 8)
    assert val_score(VAL_Y, proba, metric="auroc", threshold_rule="f1") == pytest.approx(15 / 16)
    with pytest.raises(ConfigError, match="unknown select metric 'loss'"):
        val_score(VAL_Y, proba, metric="loss", threshold_rule="f1")


def test_best_index_orients_lower_is_better_metrics_and_skips_nan():
    assert best_index([0.7, 0.9, 0.9], metric="auroc") == 1  # first of a tie: grid order breaks it
    assert best_index([0.3, float("nan"), 0.2], metric="log_loss") == 2
    assert best_index([float("nan")] * 2, metric="auroc") == 0
    assert larger_is_better(0.25, "brier") == -0.25 and larger_is_better(0.25, "f1") == 0.25
