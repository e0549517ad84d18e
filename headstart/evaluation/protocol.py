"""The records' evaluation protocol for any model's probabilities: a threshold chosen on val, frozen for test.

For people who bring their own model: `choose_threshold` on the validation predictions, then `evaluate` on test
with that threshold gives the same metric keys and 95% bootstrap intervals as `metrics.test` of a run record.
"""

from __future__ import annotations

import numpy as np

from headstart.evaluation import bootstrap
from headstart.evaluation import thresholds
from headstart.evaluation.metrics import as_labels, as_proba


def choose_threshold(y_val: np.ndarray, proba_val: np.ndarray, rule: str = "youden") -> float | None:
    """The binary decision threshold chosen on validation by `rule`, as the records choose it.

    `proba_val` is `predict_proba` output (n, C) or the positive-class probability (n,). Rules: youden, f1,
    sensitivity:X, specificity:X, fixed:T. With more than two classes decisions are the argmax, as in the
    records, so the answer is None (the rule is still checked).
    """
    y = as_labels(y_val)
    p = as_proba(proba_val, n=len(y))
    if p.shape[1] != 2:
        thresholds.parse_threshold_rule(rule)
        return None
    return thresholds.choose_threshold(y, p[:, 1], rule=rule)


def evaluate(y_true: np.ndarray, proba: np.ndarray, *, threshold: float | None, n_boot: int = 1000,
             seed: int = 0) -> dict:
    """Every record metric of one split, each bootstrapped one with `<name>_ci: [low, high]` (95%).

    Pass the threshold `choose_threshold` picked on val (None: 0.5 for binary, argmax for multi-class). The
    intervals come from `n_boot` class-stratified resamples seeded by `seed`, as in the records.
    """
    return bootstrap.evaluate(y_true, proba, threshold=threshold, n_boot=n_boot, seed=seed)
