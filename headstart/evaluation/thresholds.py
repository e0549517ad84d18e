"""Decision thresholds chosen on validation and then frozen for test (test never picks its own cut).

Candidate cuts are the distinct validation scores: cut s predicts positive when p >= s. Every threshold in
(next lower score, s] gives the same validation predictions, so the returned value is the midpoint of that
interval; test scores that fall between two validation scores are then split evenly rather than by accident.
Ties on the criterion go to the highest cut (fewest positives), which makes the choice deterministic.
"""

from __future__ import annotations

import logging

import numpy as np

from headstart.errors import ConfigError, DataError
from headstart.evaluation.metrics import DEFAULT_THRESHOLD

logger = logging.getLogger(__name__)

RULE_FORMS = "youden, f1, sensitivity:<0-1>, specificity:<0-1>, fixed:<0-1>"


def parse_threshold_rule(rule: str) -> tuple[str, float | None]:
    """Split `name[:value]` and validate it; the CLI calls this early so a typo fails before training."""
    name, _, value_text = str(rule).strip().partition(":")
    if name in ("youden", "f1") and not value_text:
        return name, None
    if name in ("sensitivity", "specificity", "fixed") and value_text:
        try:
            value = float(value_text)
        except ValueError:
            value = float("nan")
        if 0.0 <= value <= 1.0:
            return name, value
    raise ConfigError(f"unknown threshold rule {rule!r}; expected one of: {RULE_FORMS} (e.g. sensitivity:0.95)")


def choose_threshold(y_true: np.ndarray, p_pos: np.ndarray, *, rule: str = "youden") -> float:
    """Threshold on the positive-class probability, chosen on validation by `rule` (see module docstring).

    - `youden`: maximise sensitivity + specificity - 1;
    - `f1`: maximise F1 of the positive class;
    - `sensitivity:X` / `specificity:X`: the highest (resp. lowest) cut whose sensitivity (specificity) is >= X;
      when no cut at a val score reaches specificity X (a negative holds the top score), a cut just above every
      val score (specificity 1), with a one-line warning;
    - `fixed:T`: T itself.
    A validation split with a single class falls back to 0.5 with a warning.
    """
    name, value = parse_threshold_rule(rule)
    if name == "fixed":
        return float(value)
    y = np.asarray(y_true).astype(np.int64)
    p = np.asarray(p_pos, dtype=np.float64)
    if p.ndim != 1 or y.shape != p.shape:
        raise DataError(f"threshold inputs have shapes {y.shape} and {p.shape}; expected two equal 1-D arrays")
    if np.unique(y).size < 2:
        logger.warning(
            "validation split has one class; cannot choose a %s threshold, using %s", name, DEFAULT_THRESHOLD
        )
        return DEFAULT_THRESHOLD

    cuts, tp, fp, n_pos, n_neg = _cut_counts(y, p)
    sensitivity, specificity = tp / n_pos, 1.0 - fp / n_neg

    if name == "youden":  # J scaled by n_pos * n_neg, in exact integer counts so ties really tie
        best = _first_max(tp * n_neg - fp * n_pos)
    elif name == "f1":
        best = _first_max(2 * tp / (tp + fp + n_pos))
    elif name == "sensitivity":
        best = int(np.argmax(sensitivity >= value - 1e-12))  # sensitivity rises as the cut falls
    else:  # specificity: the lowest cut that still keeps specificity >= value
        reaching = np.flatnonzero(specificity >= value - 1e-12)
        if not reaching.size:  # a negative holds the top score: only a cut above every score reaches it
            above = float(np.nextafter(cuts[0], np.inf))
            logger.warning("threshold rule %s: no cut at or below the highest val score reaches specificity %g "
                           "(best %.4f); using a cut just above the highest val score %g (val specificity 1, sensitivity 0)",
                           rule, value, float(specificity.max()), float(cuts[0]))
            return above
        best = int(reaching[-1])
    return _midpoint_below(cuts, best)


def rule_outcome(rule: str, val_metrics: dict) -> dict | None:
    """What a `sensitivity:X` / `specificity:X` rule achieved on val at its frozen cut, for the record:
    `{"rule", "target", "achieved", "reached"}`; None for the other rules (they have no target)."""
    name, value = parse_threshold_rule(rule)
    if name not in ("sensitivity", "specificity") or name not in val_metrics:
        return None
    achieved = val_metrics[name]
    reached = bool(np.isfinite(achieved) and achieved >= value - 1e-12)
    return {"rule": rule, "target": value, "achieved": achieved, "reached": reached}


def roc_points(y_true: np.ndarray, p_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct cut, from (0, 0): the ROC curve the report
    draws, without importing scikit-learn (1.6 s of `headstart compare`'s start-up) for it. Both classes needed."""
    _, tp, fp, n_pos, n_neg = _cut_counts(np.asarray(y_true).astype(np.int64), np.asarray(p_pos, dtype=np.float64))
    return np.concatenate([[0.0], fp / n_neg]), np.concatenate([[0.0], tp / n_pos])


def _cut_counts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Distinct scores, highest first, and the true/false positives of each cut "p >= cut" (counted per distinct
    value, then accumulated), with the class totals."""
    cuts = np.unique(p)[::-1]
    positive = y == 1
    index = np.searchsorted(-cuts, -p)
    tp = np.cumsum(np.bincount(index, weights=positive, minlength=cuts.size))
    fp = np.cumsum(np.bincount(index, weights=~positive, minlength=cuts.size))
    return cuts, tp, fp, int(positive.sum()), int((~positive).sum())


def _first_max(score: np.ndarray) -> int:
    """Index of the first (highest-cut) score within rounding of the maximum: the deterministic tie-break."""
    return int(np.flatnonzero(score >= score.max() - 1e-12)[0])


def _midpoint_below(cuts: np.ndarray, best: int) -> float:
    """Midpoint between cut `best` and the next lower distinct score (the cut itself if it is the lowest)."""
    if best + 1 < cuts.size:
        return float((cuts[best] + cuts[best + 1]) / 2.0)
    return float(cuts[best])
