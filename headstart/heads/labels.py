"""The labels a heads run trains and scores on: a cache's classes, or its raw multi-label codes under a policy.

A multi-label cache stores raw codes (1, 0, -1 uncertain, -2 blank; data.labelcodes), so the uncertainty and
blank policies are applied here, when heads train, and switching them never re-extracts. Train rows get the
training policy's targets and mask; val and test rows get the evaluation targets: an uncertain label is never
scored, whatever the training policy, and a blank follows the --blank rule (data.label_policy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headstart.data.label_policy import evaluation_targets, parse_policy
from headstart.errors import CacheError
from headstart.tasks.core import Task
from headstart.tasks.factory import make_task, multilabel_task, task_for_classes


@dataclass
class TaskLabels:
    """Per cache row: the targets (and mask) train rows fit on and those val/test rows are scored on."""

    task: Task  # what is asked (no labels held: the arrays below are)
    y: np.ndarray  # (N,) class indices, or (N, L) 0/1 training targets
    mask: np.ndarray | None = None  # (N, L) labels the training policy keeps; None: all known
    eval_y: np.ndarray | None = None  # (N, L) scored truth; None: the same as y
    eval_mask: np.ndarray | None = None  # (N, L) scored labels (never an uncertain one)
    policy: dict | None = None  # the policy as the record's config names it (multi-label only)

    def __post_init__(self) -> None:
        if self.eval_y is None:
            self.eval_y, self.eval_mask = self.y, self.mask


def task_labels(cache, config) -> TaskLabels:
    """The run's labels from a `FeatureCache` and the `HeadsConfig`'s uncertain / blank options."""
    if cache.task != "multilabel":
        return TaskLabels(task_for_classes(cache.classes), cache.labels)
    raw = cache.label_matrix
    if raw is None:
        raise CacheError(f"{cache.path} is a multi-label cache without /samples/labels; re-extract it")
    names = list(cache.classes)
    task = multilabel_task(raw, names, uncertain=config.uncertain, blank=config.blank)
    truth, scored = evaluation_targets(raw, config.blank, names)
    policy = parse_policy(config.uncertain, config.blank, names).describe(names)
    return TaskLabels(task=make_task("multilabel", names), y=np.asarray(task.y), mask=np.asarray(task.mask),
                      eval_y=truth.astype(np.float32), eval_mask=scored, policy=policy)
