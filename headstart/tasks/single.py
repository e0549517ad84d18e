"""Single-label tasks: binary (one threshold on class 1, frozen on val) and multi-class (argmax, no threshold).

Both keep one probability column per class ((N, 2) for binary), softmax over as many logits, cross-entropy,
and the one metric suite of `evaluation` (compute_metrics with bootstrap intervals).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from headstart.evaluation.bootstrap import evaluate
from headstart.evaluation.metrics import compute_metrics
from headstart.evaluation.metrics import predict as predict_classes
from headstart.evaluation.thresholds import choose_threshold
from headstart.tasks.core import Task, softmax


class SingleLabelTask(Task):
    """One class per image: y is (N,) class indices, every label known unless a mask says otherwise."""

    link_name = "softmax"

    def link(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits)

    def loss(self, logits: Any, target: Any, *, weight: Any = None, mask: Any = None) -> Any:
        import torch.nn.functional as F

        if mask is not None:
            logits, target = logits[mask], target[mask]
        return F.cross_entropy(logits, target, weight=weight)

    def choose_threshold(self, y: np.ndarray, proba: np.ndarray, *, rule: str,
                         mask: np.ndarray | None = None) -> float | None:
        """The decision threshold chosen on val by `rule`; None where the task decides by argmax."""
        return None

    def record_rule(self, rule: str) -> str | None:
        """The threshold rule as a record names it: None where no threshold is chosen."""
        return None

    def positive_scores(self, proba: np.ndarray) -> np.ndarray | None:
        """The one score an ROC curve or a DeLong test reads; None where the task has no single positive class."""
        return None

    def predict(self, proba: np.ndarray, threshold: float | None) -> np.ndarray:
        """Class indices: argmax (the binary task cuts class 1 at its threshold instead)."""
        return np.argmax(np.asarray(proba), axis=-1)

    def evaluate(self, y: np.ndarray, proba: np.ndarray, *, threshold: float | None, n_boot: int, seed: int,
                 mask: np.ndarray | None = None, groups: np.ndarray | None = None) -> dict:
        """One split's metrics with 95% bootstrap intervals (a record's `metrics.<split>`), on the known rows;
        patients (`groups`) are resampled where they hold several images."""
        if mask is not None and groups is not None:
            groups = np.asarray(groups)[np.asarray(mask, dtype=bool)]
        y, proba = _known(y, proba, mask)
        return evaluate(y, proba, threshold=threshold, n_boot=n_boot, seed=seed, groups=groups)

    def score(self, y: np.ndarray, proba: np.ndarray, *, metric: str, threshold_rule: str,
              mask: np.ndarray | None = None) -> float:
        """One candidate's val `metric`; cut-dependent metrics at the candidate's own val threshold."""
        y, proba = _known(y, proba, mask)
        threshold = self.choose_threshold(y, proba, rule=threshold_rule)
        return float(compute_metrics(y, proba, threshold=threshold)[metric])


class BinaryTask(SingleLabelTask):
    """Two classes; class 1 is the positive one and its probability is cut at a threshold chosen on val."""

    kind = "binary"

    def choose_threshold(self, y: np.ndarray, proba: np.ndarray, *, rule: str,
                         mask: np.ndarray | None = None) -> float:
        y, proba = _known(y, proba, mask)
        return choose_threshold(y, np.asarray(proba)[:, 1], rule=rule)

    def record_rule(self, rule: str) -> str:
        return rule

    def positive_scores(self, proba: np.ndarray) -> np.ndarray:
        return np.asarray(proba)[:, 1]

    def predict(self, proba: np.ndarray, threshold: float | None) -> np.ndarray:
        return predict_classes(np.asarray(proba), threshold)


class MulticlassTask(SingleLabelTask):
    """Three or more classes, predicted by argmax; macro one-vs-rest metrics and per-class lists."""

    kind = "multiclass"


def _known(y: np.ndarray, proba: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The rows whose label is known (all of them without a mask)."""
    if mask is None:
        return y, proba
    keep = np.asarray(mask, dtype=bool)
    return np.asarray(y)[keep], np.asarray(proba)[keep]
