"""DeLong against a slow O(n^2) reference, and McNemar's two branches with hand-computed numbers."""

import numpy as np
import pytest
from scipy import stats

from headstart.evaluation.paired import delong_test, mcnemar_test


def _slow_delong(y, a, b):
    """Textbook DeLong (1988) from pairwise kernels psi(x, y) = 1[x > y] + 0.5 * 1[x == y]."""
    pos, neg = y == 1, y == 0
    m, n = pos.sum(), neg.sum()
    components = []
    for s in (a, b):
        psi = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        components.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    (auc_a, v10_a, v01_a), (auc_b, v10_b, v01_b) = components
    s10 = np.cov(np.vstack([v10_a, v10_b]))
    s01 = np.cov(np.vstack([v01_a, v01_b]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    z = (auc_a - auc_b) / np.sqrt(var)
    return auc_a, auc_b, z, 2 * stats.norm.sf(abs(z))


def test_delong_matches_slow_reference_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 150)
    a = np.round(rng.normal(size=150) + 1.2 * y, 1)
    b = np.round(rng.normal(size=150) + 0.5 * y, 1)
    result = delong_test(y, a, b)
    auc_a, auc_b, z, p = _slow_delong(y, a, b)
    assert result["auroc_a"] == pytest.approx(auc_a) and result["auroc_b"] == pytest.approx(auc_b)
    assert result["z"] == pytest.approx(z) and result["p_value"] == pytest.approx(p)
    assert result["z"] > 0 and result["diff"] > 0  # a is the better model
    low, high = result["ci_diff"]
    assert low < result["diff"] < high
    swapped = delong_test(y, b, a)
    assert swapped["z"] == pytest.approx(-result["z"]) and swapped["p_value"] == pytest.approx(result["p_value"])


def test_delong_identical_predictions():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 40)
    p = rng.random(40)
    result = delong_test(y, p, p.copy())
    assert result["diff"] == 0 and result["p_value"] == 1.0 and result["z"] == 0.0


def test_delong_one_class_is_nan():
    result = delong_test(np.zeros(5), np.linspace(0, 1, 5), np.linspace(1, 0, 5))
    assert np.isnan(result["p_value"])


def test_mcnemar_exact_branch():
    # a right / b wrong on 2 images (b=2), a wrong / b right on 8 (c=8): b + c = 10 < 25 -> exact binomial
    y = np.zeros(20, dtype=int)
    pred_a = np.array([0] * 2 + [1] * 8 + [0] * 10)
    pred_b = np.array([1] * 2 + [0] * 8 + [0] * 10)
    result = mcnemar_test(y, pred_a, pred_b)
    # P(X <= 2 | 10, 1/2) = (1 + 10 + 45) / 1024; two-sided doubles it
    assert (result["b"], result["c"], result["exact"]) == (2, 8, True)
    assert result["p_value"] == pytest.approx(2 * 56 / 1024)
    assert result["statistic"] == 2


def test_mcnemar_chi_square_branch():
    # b = 30, c = 10: (|30 - 10| - 1)^2 / 40 = 9.025, chi2(1) survival 0.002663
    y = np.ones(50, dtype=int)
    pred_a = np.array([1] * 30 + [0] * 10 + [1] * 10)
    pred_b = np.array([0] * 30 + [1] * 10 + [1] * 10)
    result = mcnemar_test(y, pred_a, pred_b)
    assert (result["b"], result["c"], result["exact"]) == (30, 10, False)
    assert result["statistic"] == pytest.approx(9.025)
    assert result["p_value"] == pytest.approx(0.0026631, abs=1e-6)


def test_mcnemar_no_discordant_pairs():
    y = np.array([0, 1, 1])
    assert mcnemar_test(y, y, y)["p_value"] == 1.0


def _paired_patients(rng, n_patients: int):
    """Two models with the same AUROC in expectation (the null), each with its own per-patient effect, so their
    difference is correlated across the images of one patient."""
    label = np.repeat([0, 1], n_patients // 2)
    patient = np.repeat(np.arange(n_patients), rng.integers(1, 6, n_patients))
    y = label[patient]
    scores = [y + rng.normal(0, 1, n_patients)[patient] + rng.normal(0, 0.3, patient.size) for _ in range(2)]
    return y, scores[0], scores[1], [f"p{i}" for i in patient]


def test_clustered_delong_reduces_to_delong_for_one_image_per_patient_and_widens_with_patients():
    rng = np.random.default_rng(3)
    y, a, b, groups = _paired_patients(rng, 80)
    plain = delong_test(y, a, b)
    clustered = delong_test(y, a, b, groups=groups)
    assert (plain["method"], clustered["method"]) == ("delong", "clustered-delong")
    assert clustered["n_clusters"] == 80 and plain["n_clusters"] == y.size
    assert clustered["diff"] == plain["diff"]  # the estimate is the same; its variance is not
    assert clustered["p_value"] > plain["p_value"]
    singletons = delong_test(y, a, b, groups=[f"i{i}" for i in range(y.size)])
    assert singletons["method"] == "delong" and singletons["p_value"] == plain["p_value"]


def test_clustered_delong_holds_its_size_under_the_null_where_image_delong_does_not():
    """400 seeded null data sets of 100 patients (1-5 images each): the clustered test rejects at 5 % about 5 %
    of the time; DeLong over images, ignoring the patients, rejects far more often."""
    rng = np.random.default_rng(11)
    rejected = {"clustered": 0, "images": 0}
    for _ in range(400):
        y, a, b, groups = _paired_patients(rng, 100)
        rejected["clustered"] += delong_test(y, a, b, groups=groups)["p_value"] < 0.05
        rejected["images"] += delong_test(y, a, b)["p_value"] < 0.05
    assert 0.02 <= rejected["clustered"] / 400 <= 0.085, rejected
    assert rejected["images"] / 400 > 0.12, rejected
