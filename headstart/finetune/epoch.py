"""One epoch of fine-tuning and one evaluation pass, plus the optimizer, schedule and state they step.

Shaped like torchvision's `references/classification/train.py`: `train_one_epoch` and `evaluate_split` are
plain functions, and optional features are objects rather than branches (an autocast context that may be a
no-op, a GradScaler that may be disabled). Distributed training plugs in through `Replica`.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from headstart.backbones.types import Preprocessing
from headstart.device import autocast, autocast_dtype
from headstart.errors import TrainingError
from headstart.evaluation.timing import Timer
from headstart.extract.preprocess import normalize_batch
from headstart.finetune.config import FinetuneConfig
from headstart.finetune.data import raise_bad_images
from headstart.finetune.distributed import Replica
from headstart.finetune.freeze import param_groups, set_train_mode
from headstart.finetune.objective import as_objective

NONFINITE_CHECK_EVERY = 20  # steps between host syncs that check the loss; per-step syncs stall a GPU queue


class NonFiniteLoss(Exception):
    """Raised by train_one_epoch; run_finetune turns it into a one-line TrainingError naming the checkpoint."""

    def __init__(self, epoch: int, step: int):
        super().__init__(f"training loss became NaN/Inf at epoch {epoch + 1} step {step + 1}")
        self.epoch, self.step = epoch, step


@dataclass
class StepContext:
    """What every batch needs besides the model: device placement and precision, passed as one object."""

    device: torch.device
    prep: Preprocessing
    amp_dtype: torch.dtype | None  # None: plain fp32 (autocast is a no-op context)
    progress: bool = True  # tqdm bars; False on ranks other than 0, so a torchrun job shows one set of bars

    def inputs(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return normalize_batch(images, self.prep, device=self.device), labels.to(self.device, non_blocking=True)

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.amp_dtype)

    def bar(self, iterable, *, desc: str):
        return tqdm(iterable, desc=desc, leave=False, disable=None if self.progress else True, unit="batch")


def training_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """As `device.autocast_dtype`, except that `auto` on CUDA prefers bf16 when the card supports it: training
    in bf16 needs no loss scaling and cannot overflow, unlike fp16 (inference in extract is fine with fp16)."""
    if precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return autocast_dtype(precision, device)


@dataclass
class TrainState:
    """Where training stands; all of it goes into the checkpoint."""

    epoch: int = 0  # next epoch to run (0-based)
    best_metric: float = -math.inf  # larger is better (loss is negated)
    best_epoch: int = -1
    history: list = field(default_factory=list)  # one dict per finished epoch

    def update(self, epoch: int, value: float) -> bool:
        """Record the epoch's val metric; True when it is the best so far. A non-finite value (NaN: val AUROC with
        one class, or a diverged score) is the worst possible, never the best, even in the first epoch: a NaN
        best would freeze selection there, since no later value compares greater than NaN."""
        if math.isfinite(value) and (self.best_epoch < 0 or value > self.best_metric):
            self.best_metric, self.best_epoch = value, epoch
            return True
        return False

    def require_best(self, metric: str) -> None:
        """TrainingError (one line) when no epoch had a finite val metric, so there is no epoch to select."""
        if self.best_epoch < 0:
            raise TrainingError(
                f"the val {metric} was NaN or infinite in every one of {len(self.history)} epoch(s), so no epoch can "
                f"be selected; check that val holds both classes, or select epochs on the val loss "
                f"(select_metric='loss')")


def train_one_epoch(model: nn.Module, loader, *, criterion, optimizer: torch.optim.Optimizer,
                    scheduler, scaler: torch.amp.GradScaler, ctx: StepContext, frozen: list[nn.Module],
                    epoch: int, epochs: int, replica: Replica = Replica()) -> dict:
    """One pass over this rank's share of the train loader; returns mean loss, accuracy, images and seconds
    (device-synchronised). `criterion` is a `finetune.objective` Objective (or a plain nn.CrossEntropyLoss); a
    multi-label accuracy counts the known labels right at 0.5.

    The loss is checked for NaN/Inf without a host sync per step: a device flag records the first bad step
    and is read every NONFINITE_CHECK_EVERY steps and at the end, OR-ed over ranks so that all stop together.
    """
    objective = as_objective(criterion)
    set_train_mode(model, frozen)
    loss_sum = torch.zeros((), device=ctx.device)
    correct = torch.zeros((), device=ctx.device, dtype=torch.long)
    scored = torch.zeros((), device=ctx.device, dtype=torch.long)
    first_bad = torch.full((), -1, device=ctx.device, dtype=torch.long)
    n_seen = 0
    with Timer(device=ctx.device) as timer, ctx.bar(loader, desc=f"epoch {epoch + 1}/{epochs} train") as bar:
        for step, (images, labels, _, errors) in enumerate(bar):
            raise_bad_images(list(errors))
            x, y = ctx.inputs(images, labels)
            with ctx.autocast():
                logits = model(x)
            loss = objective.loss(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            with torch.no_grad():
                finite = torch.isfinite(loss)
                first_bad = torch.where((first_bad < 0) & ~finite, torch.tensor(step, device=ctx.device), first_bad)
                loss_sum += loss.detach() * len(y)
                right, labels = objective.hits(logits, y)
                correct += right
                scored += labels
            n_seen += len(y)
            if (step + 1) % NONFINITE_CHECK_EVERY == 0 or step + 1 == len(loader):
                if replica.any_rank((first_bad >= 0).long()):
                    raise NonFiniteLoss(epoch, int(first_bad) if int(first_bad) >= 0 else step)
                bar.set_postfix(loss=f"{float(loss_sum) / max(n_seen, 1):.4f}", refresh=False)
    return {"loss": float(loss_sum) / max(n_seen, 1), "accuracy": float(correct) / max(int(scored), 1),
            "images": n_seen, "seconds": timer.seconds}


@torch.inference_mode()
def evaluate_split(model: nn.Module, loader, *, criterion, ctx: StepContext,
                   desc: str = "eval", replica: Replica = Replica()) -> dict:
    """Loss, accuracy and probabilities (the objective's link) of one whole split, in the split's sample order.

    Outputs are kept per sample and merged across ranks (by sample position, padding dropped) before anything
    is computed from them, so under torchrun every rank gets the numbers a one-process evaluation gives. The
    loss is the weighted mean over the split, which is what `criterion` computes on one full batch.
    """
    objective = as_objective(criterion)
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {"position": [], "proba": [], "y_true": [], "loss": [], "weight": []}
    for images, labels, positions, errors in ctx.bar(loader, desc=desc):
        raise_bad_images(list(errors))
        x, y = ctx.inputs(images, labels)
        with ctx.autocast():
            logits = model(x)
        logits = logits.float()
        loss, weight = objective.terms(logits, y)
        parts["loss"].append(loss.cpu())
        parts["weight"].append(weight.cpu())
        parts["proba"].append(objective.proba(logits).cpu())
        parts["y_true"].append(labels)
        parts["position"].append(positions)
    split = replica.gather_split({key: torch.cat(values).numpy() for key, values in parts.items()},
                                 n=len(loader.dataset))
    proba = split["proba"].astype(np.float64)
    y_true = split["y_true"]
    loss = float(split["loss"].astype(np.float64).sum() / max(split["weight"].astype(np.float64).sum(), 1e-12))
    accuracy = objective.accuracy(y_true, proba)
    return {"loss": loss, "accuracy": accuracy, "proba": proba, "y_true": y_true}


def make_optimization(model: nn.Module, *, config: FinetuneConfig, steps_per_epoch: int, ctx: StepContext):
    """AdamW over the trainable groups, a per-step warmup + cosine schedule, and a GradScaler that is active
    only for fp16 (bf16 and fp32 need no loss scaling): the three stateful objects a checkpoint saves."""
    optimizer = torch.optim.AdamW(param_groups(model, name=config.backbone, config=config))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(warmup_steps=round(config.warmup_epochs * steps_per_epoch),
                                 total_steps=config.epochs * steps_per_epoch))
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=ctx.amp_dtype == torch.float16)
    return optimizer, scheduler, scaler


def warmup_cosine(*, warmup_steps: int, total_steps: int):
    """LR factor per step: linear warmup from ~0 to 1, then cosine decay to 0 at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor
