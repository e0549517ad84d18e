"""Choosing on val: the score that picks a head's configuration or a fine-tune's epoch, and the pick itself.

Both strategies score candidates the same way: threshold-dependent binary metrics are scored at the candidate's
own val-chosen threshold (the one it would be tested with), so `f1` or `sensitivity` compare like with like.
"""

from __future__ import annotations

import logging

import numpy as np

from headstart.errors import ConfigError
from headstart.evaluation import SELECT_METRICS
from headstart.tasks.core import Task
from headstart.tasks.factory import task_for_proba

log = logging.getLogger(__name__)


def val_score(y_true: np.ndarray, proba: np.ndarray, *, metric: str, threshold_rule: str,
              task: Task | None = None, mask: np.ndarray | None = None) -> float:
    """`metric` of one candidate's val probabilities, as the task scores it (cut-dependent metrics at the
    candidate's own val thresholds; multi-label: macro over the findings, on the `mask`ed-in labels); without a
    task, the single-label task of proba's columns."""
    if metric not in SELECT_METRICS:
        raise ConfigError(f"unknown select metric {metric!r}; expected one of {', '.join(SELECT_METRICS)}")
    task = task or task_for_proba(proba)
    return task.score(y_true, proba, metric=metric, threshold_rule=threshold_rule, mask=mask)


def larger_is_better(value: float, metric: str) -> float:
    """`value` oriented so that larger is better (log_loss, brier and ece are negated)."""
    return value if SELECT_METRICS[metric] else -value


def best_index(scores: list[float], *, metric: str) -> int:
    """Index of the best finite score (first on ties, so grid order breaks them); 0 when none is finite."""
    values = np.array([larger_is_better(s, metric) for s in scores], dtype=np.float64)
    if not np.isfinite(values).any():
        log.warning("the select metric is undefined (NaN) for every config; keeping the first config of the grid")
        return 0
    return int(np.argmax(np.where(np.isfinite(values), values, -np.inf)))
