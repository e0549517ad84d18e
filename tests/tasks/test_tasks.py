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
from headstart.tasks import apply_policy, make_task, task_for_classes
from headstart.tasks.core import BLANK, UNCERTAIN


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


@pytest.mark.parametrize("uncertain, blank, y_u, m_u, m_b", [
    ("ignore", "negative", 0, False, True),
    ("zeros", "negative", 0, True, True),
    ("ones", "unknown", 1, True, False),
])
def test_policies_decide_uncertain_and_blank(uncertain, blank, y_u, m_u, m_b):
    raw = np.array([[1, UNCERTAIN], [0, BLANK]], dtype=np.int8)
    y, mask = apply_policy(raw, ("A", "B"), uncertain=uncertain, blank=blank)
    assert y[0, 1] == y_u and mask[0, 1] == m_u  # the uncertain label
    assert y[1, 1] == 0 and mask[1, 1] == m_b  # the blank one
    assert mask[:, 0].all() and y[:, 0].tolist() == [1, 0]


def test_per_finding_policy_and_bad_codes():
    raw = np.array([[UNCERTAIN, UNCERTAIN]], dtype=np.int8)
    y, mask = apply_policy(raw, ("A", "B"), uncertain={"B": "ones"})
    assert mask.tolist() == [[False, True]] and y[0, 1] == 1
    with pytest.raises(DataError, match=r"raw labels hold \[3\]"):
        apply_policy(np.array([[3, 0]]), ("A", "B"))
    with pytest.raises(DataError, match="names C"):
        apply_policy(raw, ("A", "B"), uncertain={"C": "ones"})


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
    key = task.stratify_key()
    pos = (y == 1) & mask
    assert key.shape == (len(y),) and np.all(key[~pos.any(axis=1)] == 3)
    rarest = np.where(pos[:, 0], 0, 1)  # A (30 %) is rarer than B (50 %)
    assert np.array_equal(key[pos.any(axis=1)], rarest[pos.any(axis=1)])
    sub = task.take(np.arange(10))
    assert sub.y.shape == (10, 3) and sub.mask.shape == (10, 3) and sub.names == task.names
