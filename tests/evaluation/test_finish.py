"""finish_run (the one way every strategy finishes) and the val selection both strategies use."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from headstart.errors import ConfigError
from headstart.evaluation.bootstrap import evaluate
from headstart.evaluation.finish import FinalEvaluation, RunOutline, SplitPredictions, finish_run
from headstart.evaluation.metrics import compute_metrics
from headstart.evaluation.selection import best_index, larger_is_better, val_score
from headstart.evaluation.thresholds import choose_threshold


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


def test_binary_threshold_is_chosen_on_val_and_frozen_for_test(tmp_path):
    splits = {"val": _split(40, 2, 0, "v"), "test": _split(60, 2, 1, "t")}
    calls = []

    def predict():
        calls.append(1)
        time.sleep(0.05)  # the timer covers prediction
        return splits

    record = finish_run(predict, outline=_outline(), runs_dir=tmp_path,
                        final=FinalEvaluation(threshold_rule="sensitivity:0.9", n_boot=30))
    assert calls == [1]
    expected = choose_threshold(splits["val"].y_true, splits["val"].proba[:, 1], rule="sensitivity:0.9")
    assert record.threshold == expected
    for split, out in splits.items():
        assert record.metrics[split] == evaluate(out.y_true, out.proba, threshold=expected, n_boot=30, seed=3)
        assert record.predictions[split]["ids"] == out.ids
        assert record.predictions[split]["y_true"] == out.y_true.tolist()
    assert record.timing["eval_seconds"] >= 0.05
    assert record.timing["train_seconds"] == 1.5 and record.timing["device"] == "cpu"
    assert record.timing["peak_memory_mb"] > 0
    assert (record.run_id, record.seed, record.history) == ("cached-head_set_logreg_s3", 3, [{"epoch": 1}])
    written = json.loads((tmp_path / record.run_id / "record.json").read_text())
    assert written["threshold"] == expected and written["config"] == {"C": 1.0}


def test_multiclass_has_no_threshold_and_a_non_writing_rank_writes_nothing(tmp_path):
    splits = {"val": _split(30, 3, 2, "v"), "test": _split(30, 3, 3, "t")}
    record = finish_run(lambda: splits, outline=_outline(head=None, strategy="finetune"), runs_dir=tmp_path,
                        final=FinalEvaluation(threshold_rule="youden", n_boot=10, write=False))
    assert record.threshold is None and math.isnan(record.metrics["test"]["threshold"])
    assert not any(tmp_path.iterdir())


def test_val_score_uses_the_candidates_own_threshold():
    split = _split(50, 2, 4, "v")
    own = choose_threshold(split.y_true, split.proba[:, 1], rule="f1")
    assert val_score(split.y_true, split.proba, metric="f1", threshold_rule="f1") == \
        compute_metrics(split.y_true, split.proba, threshold=own)["f1"]
    with pytest.raises(ConfigError, match="unknown select metric 'loss'"):
        val_score(split.y_true, split.proba, metric="loss", threshold_rule="f1")


def test_best_index_orients_lower_is_better_metrics_and_skips_nan():
    assert best_index([0.7, 0.9, 0.9], metric="auroc") == 1  # first of a tie: grid order breaks it
    assert best_index([0.3, float("nan"), 0.2], metric="log_loss") == 2
    assert best_index([float("nan")] * 2, metric="auroc") == 0
    assert larger_is_better(0.25, "brier") == -0.25 and larger_is_better(0.25, "f1") == 0.25
