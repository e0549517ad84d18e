"""What a fine-tune optimises and scores, by task: the loss, the link, accuracy, the val score, the predictions.

`finetune.epoch` steps and evaluates through an Objective and `finetune.train` asks it for the val score and the
final predictions, so neither branches on the task.
- Single-label: cross-entropy over a softmax, class-weighted as the heads' loss (`data.balance.class_weights`).
- Multi-label: the Task's masked BCE, one sigmoid per finding, with a per-finding `pos_weight` under
  `--class-weight balanced` (`data.balance.pos_weights`). Targets travel as floats with NaN where masked
  (`finetune.labels`); the val loss and val score use the evaluation truth of val (uncertain labels unscored).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from headstart.data.balance import class_weights, pos_weights
from headstart.data.types import Dataset, Sample
from headstart.errors import ConfigError
from headstart.evaluation.finish import SplitPredictions
from headstart.evaluation.metrics import compute_metrics
from headstart.evaluation.selection import larger_is_better, val_score
from headstart.finetune.config import FinetuneConfig
from headstart.finetune.labels import LabelPlan, decode, label_plan
from headstart.data.label_policy import policy_variant

MULTILABEL_SELECT = ("auroc", "auprc", "loss")  # macro over the findings, or the masked val loss


class SingleLabelObjective:
    """Class-weighted cross-entropy; labels are class indices."""

    task = None  # finish_run takes the single-label task of the probabilities' columns

    def __init__(self, weight: torch.Tensor | None = None):
        self.weight = weight

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, weight=self.weight)

    def terms(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image weighted loss and weight: their sums' ratio is the split's loss, as one full batch gives."""
        weight = self.weight[y] if self.weight is not None else torch.ones_like(y, dtype=torch.float)
        return F.cross_entropy(logits, y, weight=self.weight, reduction="none"), weight

    def hits(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(correct predictions, labels scored) of one batch, without a host sync."""
        return (logits.argmax(dim=1) == y).sum(), len(y)

    def proba(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=1)

    def accuracy(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        return float((proba.argmax(axis=1) == y_true).mean())

    def auroc(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        return float(compute_metrics(y_true, proba)["auroc"])  # NaN with one class

    def score(self, y_true: np.ndarray, proba: np.ndarray, *, metric: str, threshold_rule: str) -> float:
        return val_score(y_true, proba, metric=metric, threshold_rule=threshold_rule)

    def predictions(self, rows: list[Sample], y_true: np.ndarray, proba: np.ndarray) -> SplitPredictions:
        return SplitPredictions([s.id for s in rows], y_true, proba, [s.group for s in rows])

    def targets(self, split: str) -> np.ndarray | None:
        return None  # the loaders yield each sample's class index

    def describe(self) -> dict:
        return {}

    def variant(self) -> str:
        return ""


class MultilabelObjective:
    """Masked BCE with a per-finding pos_weight; labels are (L,) floats, NaN where masked."""

    def __init__(self, plan: LabelPlan, pos_weight: torch.Tensor | None = None):
        self.plan, self.task, self.pos_weight = plan, plan.task, pos_weight
        self.trained = torch.from_numpy(plan.trained)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        target, mask = _split(y)
        return self.task.loss(logits, target, weight=self.pos_weight, mask=mask)

    def terms(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image sum of the masked BCE and number of known labels: the split's loss is the mean over them."""
        target, mask = _split(y)
        per = F.binary_cross_entropy_with_logits(logits, target, pos_weight=self.pos_weight, reduction="none")
        known = (mask & self.trained.to(mask.device)).to(per.dtype)
        return (per * known).sum(dim=1), known.sum(dim=1)

    def hits(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(known labels right at 0.5, known labels) of one batch."""
        target, mask = _split(y)
        return (((logits > 0).to(target.dtype) == target) & mask).sum(), mask.sum()

    def proba(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def accuracy(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        """Label accuracy at 0.5 over the known labels."""
        y, known = decode(y_true)
        known &= self.plan.trained
        return float(((proba >= 0.5) == y)[known].mean()) if known.any() else float("nan")

    def auroc(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        return self.score(y_true, proba, metric="auroc", threshold_rule="youden")

    def score(self, y_true: np.ndarray, proba: np.ndarray, *, metric: str, threshold_rule: str) -> float:
        """Macro AUROC (or AUPRC) over the findings with both classes among their scored val labels."""
        y, known = decode(y_true)
        return self.task.score(y, self.answers(proba), metric=metric, threshold_rule=threshold_rule, mask=known)

    def predictions(self, rows: list[Sample], y_true: np.ndarray, proba: np.ndarray) -> SplitPredictions:
        y, known = decode(y_true)
        return SplitPredictions([s.id for s in rows], y, self.answers(proba), [s.group for s in rows], mask=known)

    def answers(self, proba: np.ndarray) -> np.ndarray:
        """The probabilities with an untrained finding's column NaN: no answer, so it is never scored, thresholded
        or averaged, and its metrics are null with the reason (tasks.multilabel)."""
        out = np.array(proba, dtype=np.float64)
        out[:, ~self.plan.trained] = np.nan
        return out

    def targets(self, split: str) -> np.ndarray:
        return self.plan.targets[split]

    def describe(self) -> dict:
        return {"label_policy": self.plan.describe()}

    def variant(self) -> str:
        """The run-id part of a label policy other than the default (as the heads' ids): `-u-ones`, `-blank-unknown`."""
        part = policy_variant(self.plan.policy.describe(self.plan.names))
        return f"-{part}" if part else ""


Objective = SingleLabelObjective | MultilabelObjective


def make_objective(dataset: Dataset, by_split: dict[str, list[Sample]], config: FinetuneConfig,
                   device: torch.device) -> Objective:
    """The run's objective: its labels (and, multi-label, the policy) and the train split's loss weights."""
    if dataset.task != "multilabel":
        weight = class_weights([s.label for s in by_split["train"]], len(dataset.classes), config.class_weight)
        return SingleLabelObjective(torch.from_numpy(weight).to(device))
    if config.select_metric not in MULTILABEL_SELECT:
        raise ConfigError(f"select_metric {config.select_metric!r} is not defined for a multi-label task; expected "
                          f"one of {', '.join(MULTILABEL_SELECT)} (macro over the findings)")
    if config.train_size is not None:
        raise ConfigError(f"--train-size {config.train_size} draws by class; a multi-label fine-tune takes the whole "
                          "train split (drop --train-size / --train-fraction)")
    plan = label_plan(by_split, dataset.classes, uncertain=config.uncertain, blank=config.blank)
    y, known = decode(plan.targets["train"])
    weight = pos_weights(y, known, config.class_weight)
    return MultilabelObjective(plan, torch.from_numpy(weight).to(device))


def as_objective(criterion: Any) -> Objective:
    """An Objective as is; a plain `nn.CrossEntropyLoss` (the benchmarks' and older callers') as its objective."""
    if isinstance(criterion, nn.CrossEntropyLoss):
        return SingleLabelObjective(criterion.weight)
    return criterion


def selection_value(objective: Objective, entry: dict, val: dict, config: FinetuneConfig) -> float:
    """The epoch's val score, larger is better: the weighted val loss negated, or a metric scored on the epoch's
    val predictions exactly as the heads score a config (the task's `score`; evaluation.selection)."""
    if config.select_metric == "loss":
        return -entry["val_loss"]
    score = objective.score(val["y_true"], val["proba"], metric=config.select_metric,
                            threshold_rule=config.threshold_rule)
    return larger_is_better(score, config.select_metric)


def _split(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """NaN-coded targets -> (float targets with 0 where masked, bool mask)."""
    mask = ~torch.isnan(y)
    return torch.where(mask, y, torch.zeros_like(y)), mask
