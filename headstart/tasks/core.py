"""What every task kind shares and stage one may use: the label container, its mask, the link and the loss.

A `Task` holds the label names, the label array and its mask (True = the label is known and may be trained on
or scored), and says how many outputs a head has, which link maps logits to probabilities and which loss trains
them. The metric suite and the threshold rule live in the kind's own module (tasks.single, tasks.multilabel),
above evaluation; this module imports nothing from evaluation, so stage one may use it (tests/test_layers.py).
Raw multi-label codes and the uncertainty / blank policies are data's (data.labelcodes, data.label_policy).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from headstart.errors import DataError
from headstart.tasks import TASK_KINDS  # noqa: F401 - re-exported for stage one



@dataclass(frozen=True, eq=False)
class Task:
    """One kind of question about the images; subclasses fill in the kind-specific behaviour.

    `names` are the class names (single-label) or the finding names (multi-label). `y` is (N,) class indices or
    (N, L) 0/1 values; `mask` is None (every label known) or a bool array of y's shape. Both may be None for a
    task that only describes outputs (a saved head, an exported model).
    """

    names: tuple[str, ...]
    y: np.ndarray | None = None
    mask: np.ndarray | None = None

    kind: ClassVar[str] = ""
    link_name: ClassVar[str] = ""  # "softmax" or "sigmoid": the exported graph and the record name it

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        if self.y is not None and self.mask is not None and np.shape(self.mask) != np.shape(self.y):
            raise DataError(f"label mask has shape {np.shape(self.mask)}; expected the labels' {np.shape(self.y)}")

    @property
    def n_outputs(self) -> int:
        """Probability columns a head of this task produces."""
        return len(self.names)

    def take(self, index: np.ndarray) -> Task:
        """The same task on a subset of its rows (a split)."""
        return replace(self, y=None if self.y is None else self.y[index],
                       mask=None if self.mask is None else self.mask[index])

    def known(self) -> np.ndarray:
        """The mask, or all True where every label is known."""
        return np.ones(np.shape(self.y), dtype=bool) if self.mask is None else np.asarray(self.mask, dtype=bool)

    def stratify_key(self) -> np.ndarray:
        """The key data.sampling balances across folds and splits: (N,) class indices for a single-label task,
        an (N, L) 0/1 matrix of known positives for a multi-label one."""
        return np.asarray(self.y, dtype=np.int64)

    def link(self, logits: np.ndarray) -> np.ndarray:
        """Logits -> probabilities, in numpy (the head's `predict_proba` and the checks use it)."""
        raise NotImplementedError

    def loss(self, logits: Any, target: Any, *, weight: Any = None, mask: Any = None) -> Any:
        """The training loss on torch tensors, mean over the known labels."""
        raise NotImplementedError

    def record_threshold(self, threshold: Any) -> Any:
        """The threshold as a record and head.json hold it: a number or None here, an object by finding for a
        multi-label task."""
        return threshold

    def describe(self) -> dict:
        """What a record, head.json or model card says about the task."""
        return {"task": self.kind, "labels": list(self.names), "link": self.link_name}


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # the overflow-free form of 1 / (1 + exp(-z))
