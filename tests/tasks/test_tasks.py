"""The Task owns what differs between binary, multi-class and multi-label questions: outputs, link, loss,
thresholds, metrics and the stratification key. Each is checked against the evaluation code or sklearn."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from headstart.errors import ConfigError, DataError
from headstart.evaluation.bootstrap import evaluate
from headstart.evaluation.thresholds import choose_threshold
from headstart.data.label_policy import parse_policy, training_targets
from headstart.data.labelcodes import BLANK, UNCERTAIN
from headstart.tasks import make_task, multilabel_task, task_for_classes


def _single(n_classes: int, n: int = 120, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes)) + 1.5 * np.eye(n_classes)[y]
    return y, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_kind_follows_the_classes():
    assert task_for_classes(["a", "b"]).kind == "binary"
    assert task_for_classes(["a", "b", "c"]).kind == "multiclass"
    assert task_for_classes(["a", "b", "c"]).n_outputs == 3
    assert make_task("multilabel", ["x", "y"]).link_name == "sigmoid"


@pytest.mark.parametrize("args, message", [
    (("ordinal", ["a", "b"]), "unknown task 'ordinal'"),
    (("binary", ["a"]), "needs at least two classes"),
    (("multilabel", ["a", "b"], np.zeros(4)), r"expects \(N, L\) labels"),
    (("multiclass", ["a", "b", "c"], np.zeros((4, 3))), r"expects \(N,\) labels"),
])
def test_bad_task_is_one_line(args, message):
    with pytest.raises(DataError, match=message):
        make_task(*args)


def test_binary_thresholds_and_metrics_are_the_evaluation_code():
    y, p = _single(2)
    task = task_for_classes(["neg", "pos"], y)
    t = task.choose_threshold(y, p, rule="sensitivity:0.9")
    assert t == choose_threshold(y, p[:, 1], rule="sensitivity:0.9")
    assert task.evaluate(y, p, threshold=t, n_boot=30, seed=1) == evaluate(y, p, threshold=t, n_boot=30, seed=1)
    assert np.array_equal(task.predict(p, t), (p[:, 1] >= t).astype(int))
    assert task.record_rule("youden") == "youden"


def test_multiclass_decides_by_argmax_without_a_threshold():
    y, p = _single(3)
    task = task_for_classes(["a", "b", "c"], y)
    assert task.choose_threshold(y, p, rule="youden") is None and task.record_rule("youden") is None
    assert np.array_equal(task.predict(p, None), p.argmax(axis=1))
    assert "auroc_per_class" in task.evaluate(y, p, threshold=None, n_boot=10, seed=0)


def test_single_label_link_and_loss():
    task = task_for_classes(["a", "b", "c"])
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    assert np.allclose(task.link(logits), torch.softmax(torch.tensor(logits), 1).numpy())
    z, t = torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
    assert torch.allclose(task.loss(z, t), F.cross_entropy(z, t))


def test_a_mask_drops_rows_from_single_label_scores():
    y, p = _single(2)
    keep = np.arange(len(y)) % 3 != 0
    task = task_for_classes(["neg", "pos"])
    assert task.score(y, p, metric="auroc", threshold_rule="youden", mask=keep) == \
        pytest.approx(roc_auc_score(y[keep], p[keep, 1]))


def test_a_multilabel_task_from_raw_codes_uses_data_label_policy():
    raw = np.array([[1, UNCERTAIN], [0, BLANK], [1, 1]], dtype=np.int8)
    task = multilabel_task(raw, ["A", "B"], uncertain="ones", blank="unknown")
    y, mask = training_targets(raw, parse_policy("ones", "unknown", ["A", "B"]), ["A", "B"])
    assert task.kind == "multilabel" and np.array_equal(task.y, y) and np.array_equal(task.mask, mask)
    assert task.mask[0, 1] and task.y[0, 1] == 1 and not task.mask[1, 1]  # U-Ones; a blank is unknown


def _multilabel(n: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 3)) < [0.3, 0.5, 0.0]).astype(np.int8)  # the third finding has no positive
    p = np.clip(0.6 * y + 0.5 * rng.random((n, 3)), 0, 1)
    mask = rng.random((n, 3)) > 0.2
    return y, p, mask


def test_multilabel_metrics_per_finding_and_a_null_with_its_reason():
    y, p, mask = _multilabel()
    task = make_task("multilabel", ["A", "B", "C"], y, mask)
    thresholds = task.choose_threshold(y, p, rule="youden", mask=mask)
    assert thresholds[2] is None and all(isinstance(t, float) for t in thresholds[:2])
    m = task.evaluate(y, p, threshold=thresholds, n_boot=30, seed=0, mask=mask)
    json.dumps(m, allow_nan=False)  # the record's contract: no NaN, nulls instead
    per = m["per_label"]
    for j, name in enumerate("AB"):
        known = mask[:, j]
        assert per[name]["auroc"] == pytest.approx(roc_auc_score(y[known, j], p[known, j]))
        assert per[name]["n"] == known.sum() and per[name]["n_pos"] == y[known, j].sum()
        assert per[name]["n_masked"] == (~known).sum() and per[name]["threshold"] == thresholds[j]
        assert per[name]["auroc_ci"][0] <= per[name]["auroc"] <= per[name]["auroc_ci"][1]
    assert per["C"]["auroc"] is None and per["C"]["reason"] == "one class among the labelled rows"
    assert m["auroc"] == pytest.approx((per["A"]["auroc"] + per["B"]["auroc"]) / 2)
    assert m["micro_auroc"] == pytest.approx(roc_auc_score(y[mask], p[mask]))
    assert task.score(y, p, metric="auroc", threshold_rule="youden", mask=mask) == pytest.approx(m["auroc"])
    with pytest.raises(ConfigError, match="not defined for a multi-label task"):
        task.score(y, p, metric="f1", threshold_rule="youden", mask=mask)


def test_multilabel_loss_is_masked_bce_and_the_link_a_sigmoid():
    task = make_task("multilabel", ["A", "B"])
    z, t = torch.randn(6, 2), torch.randint(0, 2, (6, 2))
    m = torch.rand(6, 2) > 0.3
    expected = F.binary_cross_entropy_with_logits(z[m], t[m].float())
    assert torch.allclose(task.loss(z, t, mask=m), expected)
    assert np.allclose(task.link(np.array([[0.0, 50.0, -50.0]])), [[0.5, 1.0, 0.0]])


def test_multilabel_left_out_findings_and_stratification_key(caplog):
    y, _, mask = _multilabel()
    task = make_task("multilabel", ["A", "B", "C"], y, mask)
    assert task.trainable(y, mask).tolist() == [True, True, False]
    assert "finding C has no positive" in caplog.text
    key = task.stratify_key()  # what data.sampling takes from a multi-label Task: known positives, (N, L)
    assert key.shape == y.shape and np.array_equal(key, (y == 1) & mask)
    sub = task.take(np.arange(10))
    assert sub.y.shape == (10, 3) and sub.mask.shape == (10, 3) and sub.names == task.names
