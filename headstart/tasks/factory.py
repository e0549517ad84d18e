"""The one place a task kind is chosen: from its name, or from a cache's classes and labels."""

from __future__ import annotations

import numpy as np

from headstart.data.label_policy import parse_policy, training_targets
from headstart.errors import DataError
from headstart.tasks import TASK_KINDS
from headstart.tasks.core import Task
from headstart.tasks.multilabel import MultilabelTask
from headstart.tasks.single import BinaryTask, MulticlassTask

_KINDS: dict[str, type[Task]] = {"binary": BinaryTask, "multiclass": MulticlassTask, "multilabel": MultilabelTask}


def make_task(kind: str, names, y: np.ndarray | None = None, mask: np.ndarray | None = None) -> Task:
    """The Task of `kind` over label `names`, holding labels `y` and their `mask` (None: all known)."""
    cls = _KINDS.get(kind)
    if cls is None:
        raise DataError(f"unknown task {kind!r}; expected one of {', '.join(TASK_KINDS)}")
    names = tuple(str(n) for n in names)
    if cls is not MultilabelTask and len(names) < 2:
        raise DataError(f"a {kind} task needs at least two classes; found {len(names)} ({', '.join(names)})")
    if y is not None and np.ndim(y) != (2 if cls is MultilabelTask else 1):
        raise DataError(f"labels have shape {np.shape(y)}; a {kind} task expects "
                        f"{'(N, L)' if cls is MultilabelTask else '(N,)'} labels")
    return cls(names, None if y is None else np.asarray(y), None if mask is None else np.asarray(mask, dtype=bool))


def task_for_classes(classes, y: np.ndarray | None = None, mask: np.ndarray | None = None) -> Task:
    """A single-label task from a cache's class names: binary for two classes, multi-class for more."""
    return make_task("binary" if len(classes) == 2 else "multiclass", classes, y, mask)


def task_for_proba(proba: np.ndarray) -> Task:
    """The single-label task a (N, C) probability array answers, for callers that pass no Task (the protocol)."""
    n = np.shape(proba)[1] if np.ndim(proba) == 2 else 2
    return task_for_classes([str(k) for k in range(n)])


def multilabel_task(raw: np.ndarray, names, *, uncertain: str | list[str] = "ignore",
                    blank: str = "negative") -> Task:
    """The multi-label Task of a cache's raw (N, L) codes under an uncertainty and a blank policy
    (data.label_policy): the targets it trains on and the mask of the labels it may use."""
    names = [str(n) for n in names]
    y, mask = training_targets(raw, parse_policy(uncertain, blank, names), names)
    return make_task("multilabel", names, y, mask)
