"""What every task kind shares and stage one may use: the label container, its mask, the link and the loss.

A `Task` holds the label names, the label array and its mask (True = the label is known and may be trained on
or scored), and says how many outputs a head has, which link maps logits to probabilities and which loss trains
them. The metric suite and the threshold rule live in the kind's own module (tasks.single, tasks.multilabel),
above evaluation; this module imports nothing from evaluation, so data/ may call `stratify_key` and the raw-label
codes without reaching it (tests/test_layers.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from headstart.errors import DataError
from headstart.tasks import TASK_KINDS  # noqa: F401 - re-exported for stage one

# Raw multi-label codes as a cache stores them (int8): a policy turns them into (y, mask) when a head trains.
POSITIVE, NEGATIVE, UNCERTAIN, BLANK = 1, 0, -1, -2


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
        """(N,) integer key a stratified sampler balances across folds and splits; single-label: the class."""
        return np.asarray(self.y, dtype=np.int64)

    def link(self, logits: np.ndarray) -> np.ndarray:
        """Logits -> probabilities, in numpy (the head's `predict_proba` and the checks use it)."""
        raise NotImplementedError

    def loss(self, logits: Any, target: Any, *, weight: Any = None, mask: Any = None) -> Any:
        """The training loss on torch tensors, mean over the known labels."""
        raise NotImplementedError

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


def multilabel_key(y: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(N, L) -> (N,) key for a single-key stratifier: each row's rarest known positive label (L = none).

    A stand-in until iterative stratification balances every label at once: it keeps the rare findings spread
    over the splits, which is what a plain random split loses first.
    """
    y = np.asarray(y)
    pos = (y == POSITIVE) & (np.ones(y.shape, bool) if mask is None else np.asarray(mask, bool))
    count = pos.sum(axis=0)
    rarity = np.where(pos, count[None, :], np.iinfo(np.int64).max)
    return np.where(pos.any(axis=1), rarity.argmin(axis=1), y.shape[1]).astype(np.int64)


def apply_policy(raw: np.ndarray, names: tuple[str, ...] | list[str], *, uncertain: str | dict = "ignore",
                 blank: str = "negative") -> tuple[np.ndarray, np.ndarray]:
    """Raw (N, L) codes (1 / 0 / -1 uncertain / -2 blank) -> (y, mask) under an uncertainty and a blank policy.

    `uncertain` is "ignore" (masked), "zeros" or "ones", or a dict finding -> one of those (others: "ignore").
    `blank` is "negative" (a scored 0, the CheXpert paper's reading) or "unknown" (masked, torchxrayvision's).
    """
    raw = np.asarray(raw)
    if raw.ndim != 2 or raw.shape[1] != len(names):
        raise DataError(f"raw labels have shape {raw.shape}; expected (N, {len(names)}) for {len(names)} findings")
    bad = ~np.isin(raw, (POSITIVE, NEGATIVE, UNCERTAIN, BLANK))
    if bad.any():
        raise DataError(f"raw labels hold {sorted(set(np.unique(raw[bad]).tolist()))}; expected 1, 0, -1 "
                        f"(uncertain) or -2 (blank)")
    per = uncertain if isinstance(uncertain, dict) else {n: uncertain for n in names}
    unknown = sorted(set(per) - set(names))
    if unknown:
        raise DataError(f"uncertainty policy names {', '.join(unknown)}; expected findings of {', '.join(names)}")
    if blank not in ("negative", "unknown"):
        raise DataError(f"blank policy {blank!r}; expected negative or unknown")
    y = (raw == POSITIVE).astype(np.int8)
    mask = (raw == POSITIVE) | (raw == NEGATIVE) | ((raw == BLANK) & (blank == "negative"))
    for j, name in enumerate(names):
        rule = per.get(name, "ignore")
        if rule not in ("ignore", "zeros", "ones"):
            raise DataError(f"uncertainty policy {rule!r} for {name}; expected ignore, zeros or ones")
        if rule != "ignore":
            u = raw[:, j] == UNCERTAIN
            y[u, j] = 1 if rule == "ones" else 0
            mask[u, j] = True
    return y, mask
