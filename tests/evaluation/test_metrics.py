"""The metric suite against scikit-learn, on binary and multi-class random data with ties."""

import logging

import numpy as np
import pytest
from sklearn import metrics as skm

from headstart.errors import DataError
from headstart.evaluation.metrics import (
    batch_auroc_auprc,
    compute_metrics,
    expected_calibration_error,
)


def _random_problem(seed: int, n: int, n_classes: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    logits = np.round(rng.normal(size=(n, n_classes)) + 1.2 * np.eye(n_classes)[y], 1)  # rounding makes ties
    proba = np.exp(logits)
    return y, proba / proba.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_metrics_match_sklearn(seed):
    y, proba = _random_problem(seed, 257, 2)
    threshold = 0.4
    pred = (proba[:, 1] >= threshold).astype(int)
    m = compute_metrics(y, proba, threshold=threshold)
    assert m["auroc"] == pytest.approx(skm.roc_auc_score(y, proba[:, 1]), abs=1e-12)
    assert m["auprc"] == pytest.approx(skm.average_precision_score(y, proba[:, 1]), abs=1e-12)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred))
    assert m["specificity"] == pytest.approx(skm.recall_score(1 - y, 1 - pred))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba), rel=1e-9)
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, proba[:, 1]), rel=1e-9)
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    assert m["threshold"] == threshold and m["n"] == 257


@pytest.mark.parametrize("n_classes", [3, 5])
def test_multiclass_macro_metrics_match_sklearn(n_classes):
    y, proba = _random_problem(7, 400, n_classes)
    pred = proba.argmax(axis=1)
    m = compute_metrics(y, proba)
    assert m["auroc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"), abs=1e-12)
    onehot = np.eye(n_classes)[y]
    assert m["auprc"] == pytest.approx(skm.average_precision_score(onehot, proba, average="macro"), abs=1e-12)
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba), rel=1e-9)
    recall = skm.recall_score(y, pred, average=None)
    assert m["sensitivity_per_class"] == pytest.approx(recall.tolist())
    assert m["sensitivity"] == pytest.approx(recall.mean())
    cm = skm.confusion_matrix(y, pred)
    spec = [(cm.sum() - cm[k].sum() - cm[:, k].sum() + cm[k, k]) / (cm.sum() - cm[k].sum()) for k in range(n_classes)]
    assert m["specificity_per_class"] == pytest.approx(spec)
    assert m["confusion_matrix"] == cm.tolist()
    assert np.isnan(m["threshold"])


def test_batch_kernel_matches_sklearn_row_by_row():
    rng = np.random.default_rng(3)
    positive = rng.random(60) < 0.3
    scores = np.round(rng.random((20, 60)), 1)  # heavy ties
    auroc, auprc = batch_auroc_auprc(positive, scores)
    for row in range(20):
        assert auroc[row] == pytest.approx(skm.roc_auc_score(positive, scores[row]), abs=1e-12)
        assert auprc[row] == pytest.approx(skm.average_precision_score(positive, scores[row]), abs=1e-12)


def test_one_class_split_gives_nan_auroc_and_one_warning(caplog):
    y = np.zeros(12, dtype=int)
    proba = np.linspace(0.05, 0.95, 12)
    with caplog.at_level(logging.WARNING, logger="headstart.evaluation.metrics"):
        m = compute_metrics(y, proba)  # 1-D input is read as p1
    assert np.isnan(m["auroc"]) and np.isnan(m["auprc"]) and np.isnan(m["sensitivity"])
    assert m["specificity"] == pytest.approx(np.mean(proba < 0.5))
    assert len([r for r in caplog.records if "AUROC" in r.getMessage()]) == 1


def test_ece_binary_is_p1_calibration():
    # every sample in the (0.8, 0.8667] bin, 80% positive: perfectly calibrated
    y = np.array([1] * 8 + [0] * 2)
    proba = np.column_stack([np.full(10, 0.2), np.full(10, 0.8)])
    assert expected_calibration_error(y, proba) == pytest.approx(0.0, abs=1e-12)
    # all positive at p1 = 0.8: gap 0.2
    assert expected_calibration_error(np.ones(10, int), proba) == pytest.approx(0.2)


def test_bad_inputs_raise_data_errors():
    with pytest.raises(DataError, match="shape"):
        compute_metrics(np.array([0, 1, 1]), np.ones((2, 2)) / 2)
    with pytest.raises(DataError, match="class indices"):
        compute_metrics(np.array([0, 1, 2]), np.ones((3, 2)) / 2)
    with pytest.raises(DataError, match="NaN"):
        compute_metrics(np.array([0, 1]), np.array([[0.5, np.nan], [0.5, 0.5]]))
