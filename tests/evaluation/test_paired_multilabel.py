"""Holm's adjustment and the paired bootstrap of the macro-AUROC difference (multi-label paired tests)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from headstart.errors import DataError
from headstart.evaluation.clusters import cluster_index
from headstart.evaluation.paired import _auroc, _group_table, holm_adjust, paired_bootstrap_macro


def test_holm_by_hand_with_nan_outside_the_family():
    # sorted 0.01, 0.03, 0.04, 0.2 of a family of 4: x4, x3, x2, x1, then a running maximum
    adjusted = holm_adjust([0.01, np.nan, 0.04, 0.03, 0.2])
    assert np.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2, 3, 4]], [0.04, 0.09, 0.09, 0.2])


def test_holm_is_monotone_at_least_raw_and_at_most_one():
    p = np.random.default_rng(0).random(12) ** 3
    adjusted = holm_adjust(p)
    order = np.argsort(p)
    assert np.all(np.diff(adjusted[order]) >= 0)
    assert np.all(adjusted >= p) and np.all(adjusted <= 1.0)
    assert holm_adjust([]).size == 0 and np.isnan(holm_adjust([np.nan])).all()


def _two_runs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 4)) < 0.3).astype(int)
    y[:, 3] = 0  # one class: outside the macro mean
    mask = rng.random(y.shape) > 0.1
    p_a = y * 1.0 + rng.normal(0, 1, y.shape)
    p_b = y * 0.3 + rng.normal(0, 1, y.shape)
    return y, mask, p_a, p_b


def test_macro_difference_equals_sklearn_on_the_scored_labels():
    y, mask, p_a, p_b = _two_runs()
    result = paired_bootstrap_macro(y, mask, p_a, p_b, n_boot=200)
    expected = np.mean([roc_auc_score(y[mask[:, j], j], p_a[mask[:, j], j])
                        - roc_auc_score(y[mask[:, j], j], p_b[mask[:, j], j]) for j in range(3)])
    assert result["diff"] == pytest.approx(expected, abs=1e-12)
    assert result["n_findings"] == 3 and result["method"] == "bootstrap" and result["n_clusters"] == 300
    assert result["ci_diff"][0] < result["diff"] < result["ci_diff"][1] and result["ci_diff"][0] > 0
    assert result["p_value"] == pytest.approx(1 / 200)  # every resample favours a: the floor 1 / n_boot
    assert paired_bootstrap_macro(y, mask, p_a, p_b, n_boot=200) == result  # seeded


def test_identical_runs_differ_by_zero_with_p_one():
    y, mask, p_a, _ = _two_runs()
    result = paired_bootstrap_macro(y, mask, p_a, p_a.copy(), n_boot=100)
    assert result["diff"] == 0.0 and result["ci_diff"] == [0.0, 0.0] and result["p_value"] == 1.0


def test_patients_are_resampled_whole():
    y, mask, p_a, p_b = _two_runs(n=240)
    groups = [f"p{i // 4}" for i in range(240)]
    groups[:4] = [""] * 4  # blank groups: one cluster per image
    result = paired_bootstrap_macro(y, mask, p_a, p_b, groups=groups, n_boot=100)
    assert result["method"] == "cluster-bootstrap" and result["n_clusters"] == 59 + 4
    cluster = cluster_index(groups, 240)
    assert len(set(cluster[4:8])) == 1 and len(set(cluster[:4])) == 4


def test_cluster_counts_auroc_equals_sklearn_on_the_expanded_resample():
    rng = np.random.default_rng(3)
    positive = rng.random(60) < 0.4
    scores = np.round(rng.random(60), 1)  # many ties
    cluster = np.arange(60) // 3
    counts = rng.integers(0, 3, size=(1, 20)).astype(float)
    expanded = np.repeat(np.arange(60), counts[0, cluster].astype(int))
    expected = roc_auc_score(positive[expanded], scores[expanded])
    assert _auroc(_group_table(positive, scores, cluster, 20), counts)[0] == pytest.approx(expected)


def test_misshapen_inputs_are_one_data_error():
    y, mask, p_a, p_b = _two_runs()
    with pytest.raises(DataError, match="expected four equal"):
        paired_bootstrap_macro(y, mask, p_a[:, :2], p_b)
    with pytest.raises(DataError, match="expected one group per sample"):
        paired_bootstrap_macro(y, mask, p_a, p_b, groups=["a"] * 3)
