"""Multi-label targets of a fine-tune: the label policy applied to the raw codes of each split.

The train split gets the training targets (`data.label_policy.training_targets`: `--uncertain`, `--blank`),
with every finding that has one class among them masked out (`MultilabelTask.trainable` warns once per finding;
its probabilities are NaN, so it is reported null with the reason and the macro figures cover the others). Val and test get the evaluation truth
(`evaluation_targets`): an uncertain label is never scored, whatever the training policy, and blanks follow the
`--blank` rule. One float array per split carries target and mask together through the loaders: NaN = masked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from headstart.data.label_policy import LabelPolicy, evaluation_targets, masked_counts, parse_policy, training_targets
from headstart.data.types import Sample
from headstart.tasks.factory import make_task
from headstart.tasks.multilabel import MultilabelTask



@dataclass
class LabelPlan:
    """What a multi-label fine-tune trains on and is scored against."""

    task: MultilabelTask  # the finding names; y / mask are the train split's training targets
    policy: LabelPolicy
    trained: np.ndarray  # (L,) bool: findings with both classes among the training targets
    targets: dict[str, np.ndarray]  # split -> float32 (n, L): 0 / 1, NaN where masked

    @property
    def names(self) -> tuple[str, ...]:
        return self.task.names

    def describe(self) -> dict:
        """The policy as the record's config shows it, with what it masks in train and which findings it skips."""
        return {**self.policy.describe(self.names),
                "untrained": [n for n, ok in zip(self.names, self.trained) if not ok],
                "n_masked_train": masked_counts(~np.isnan(self.targets["train"]), self.names)}


def label_plan(by_split: dict[str, Sequence[Sample]], names: Sequence[str], *, uncertain: str | Sequence[str],
               blank: str) -> LabelPlan:
    """The LabelPlan of train / val / test samples carrying raw codes (`Sample.labels`) under a policy."""
    names = [str(n) for n in names]
    raw = {split: np.array([s.labels for s in rows], dtype=np.int8).reshape(-1, len(names))
           for split, rows in by_split.items()}
    policy = parse_policy(uncertain, blank, names)
    y, mask = training_targets(raw["train"], policy, names)
    task = make_task("multilabel", names, y, mask)
    trained = task.trainable(y, mask)
    mask[:, ~trained] = False
    targets = {"train": encode(y, mask)}
    for split in (s for s in by_split if s != "train"):
        truth, known = evaluation_targets(raw[split], blank, names)
        targets[split] = encode(truth, known)
    return LabelPlan(task=task, policy=policy, trained=trained, targets=targets)


def encode(y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """0/1 targets and their mask -> one float32 array, NaN where masked."""
    return np.where(np.asarray(mask, dtype=bool), np.asarray(y, dtype=np.float32), np.nan).astype(np.float32)


def decode(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `encode`: (int8 0/1 truth with 0 where masked, bool mask)."""
    targets = np.asarray(targets, dtype=np.float64)
    known = ~np.isnan(targets)
    return np.where(known, targets, 0).astype(np.int8), known

