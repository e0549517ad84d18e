"""Threshold rules on toy validation sets whose best cut is known by hand."""

import logging

import numpy as np
import pytest

from headstart.errors import ConfigError
from headstart.evaluation.thresholds import choose_threshold, parse_threshold_rule

# negatives 0.1 0.2 0.3 0.6, positives 0.4 0.7 0.8 0.9
Y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
P = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])


def test_youden_known_cut():
    # cut p >= 0.7: sensitivity 3/4, specificity 1 -> J = 0.75, the unique maximum; midpoint to 0.6 is 0.65
    assert choose_threshold(Y, P, rule="youden") == pytest.approx(0.65)


def test_youden_tie_goes_to_highest_cut():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.6, 0.4, 0.7, 0.8])
    # cuts 0.7 (TPR 2/3, FPR 0) and 0.4 (TPR 1, FPR 1/3) both give J = 2/3; the higher one wins
    assert choose_threshold(y, p, rule="youden") == pytest.approx(0.65)


@pytest.mark.parametrize("target", [0.5, 0.75, 0.95, 1.0])
def test_sensitivity_rule_reaches_target_with_highest_cut(target):
    t = choose_threshold(Y, P, rule=f"sensitivity:{target}")
    sensitivity = np.mean(P[Y == 1] >= t)
    assert sensitivity >= target
    above = np.sort(P[P > t])  # above[0] is the chosen cut; the next higher cut must miss the target
    assert len(above) == 1 or np.mean(P[Y == 1] >= above[1]) < target


def test_specificity_rule_and_f1_and_fixed():
    t = choose_threshold(Y, P, rule="specificity:0.75")
    assert np.mean(P[Y == 0] < t) >= 0.75
    assert t == pytest.approx(0.35)  # lowest cut (0.4) keeping 3 of 4 negatives below
    # F1 per cut: 0.9 -> 2/5, 0.8 -> 4/6, 0.7 -> 6/7, 0.6 -> 6/8, 0.4 -> 8/9 (best), 0.3 -> 8/10
    assert choose_threshold(Y, P, rule="f1") == pytest.approx(0.35)
    assert choose_threshold(Y, P, rule="fixed:0.3") == 0.3


def test_one_class_validation_falls_back_to_half(caplog):
    with caplog.at_level(logging.WARNING):
        assert choose_threshold(np.ones(5), np.linspace(0, 1, 5)) == 0.5
    assert "one class" in caplog.text


@pytest.mark.parametrize("rule", ["youdn", "sensitivity", "sensitivity:1.5", "fixed:x", "f1:0.3", ""])
def test_bad_rule_is_config_error_listing_forms(rule):
    with pytest.raises(ConfigError, match="youden, f1, sensitivity:<0-1>") as error:
        parse_threshold_rule(rule)
    assert repr(rule) in str(error.value)


def test_roc_points_are_sklearns_curve():
    from sklearn.metrics import roc_curve

    from headstart.evaluation.thresholds import roc_points

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    p = np.round(rng.random(300) * 0.5 + 0.4 * y, 2)  # rounded: many ties
    fpr, tpr = roc_points(y, p)
    want_fpr, want_tpr, _ = roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(fpr, want_fpr)
    np.testing.assert_allclose(tpr, want_tpr)


def test_unreachable_specificity_cuts_above_every_score_warns_and_records_what_it_achieved(caplog):
    """A negative holds the top val score, so no cut at a val score reaches specificity 0.9; the old code returned a
    cut with specificity 2/3 silently."""
    from headstart.evaluation.metrics import compute_metrics
    from headstart.evaluation.thresholds import rule_outcome

    y, p = np.array([0, 1, 1, 0, 0]), np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    with caplog.at_level("WARNING"):
        t = choose_threshold(y, p, rule="specificity:0.9")
    assert t > p.max() and not (p >= t).any()
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "specificity 0.9" in warning and "\n" not in warning
    val = compute_metrics(y, np.stack([1 - p, p], axis=1), threshold=t)
    assert val["specificity"] == 1.0
    assert rule_outcome("specificity:0.9", val) == {"rule": "specificity:0.9", "target": 0.9, "achieved": 1.0,
                                                    "reached": True}
    assert rule_outcome("youden", val) is None
    # a reachable target keeps the lowest cut that reaches it, and records a miss honestly when rounding bites
    assert choose_threshold(y, p, rule="specificity:0.6") == pytest.approx(0.45)  # cut 0.7, midpoint to 0.2
    assert rule_outcome("sensitivity:0.99", {"sensitivity": 0.5})["reached"] is False
