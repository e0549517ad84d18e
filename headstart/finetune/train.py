"""The fine-tune contrast: train a backbone + head end to end on the same splits, metrics and timers as heads.

Shaped like torchvision's `references/classification/train.py`: `train_one_epoch` and `evaluate_split` are
plain functions, optional features are objects rather than branches (an autocast context that may be a no-op,
a GradScaler that may be disabled), one checkpoint dict per file, and resume continues at `epoch + 1`.
Distributed training plugs in at one seam, `headstart.finetune.distributed.Replica` (sampler shards, DDP
wrapper, evaluation gathered across ranks, which process writes).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from headstart.backbones.registry import check_name, create_model
from headstart.backbones.types import Preprocessing
from headstart.cache.reader import FeatureCache
from headstart.data.balance import class_weights
from headstart.data.dataset import build_dataset, manifest_hash
from headstart.data.sources import load_source
from headstart.data.types import Dataset, Sample, SplitConfig
from headstart.device import autocast, autocast_dtype, default_workers, precision_name, resolve_device
from headstart.errors import CacheMismatchError, DataError, TrainingError
from headstart.evaluation.bootstrap import evaluate
from headstart.evaluation.metrics import compute_metrics
from headstart.evaluation.records import RunRecord, make_run_id, write_record
from headstart.evaluation.thresholds import choose_threshold, parse_threshold_rule
from headstart.evaluation.timing import Timer, describe_device, peak_memory_mb, reset_peak_memory
from headstart.extract.preprocess import normalize_batch
from headstart.finetune.checkpoint import (capture_rng_state, load_checkpoint, make_fingerprint, publish_copy,
                                           restore_rng_state, save_checkpoint)
from headstart.finetune.config import FinetuneConfig
from headstart.finetune.data import SplitImages, make_loader, raise_bad_images
from headstart.finetune.distributed import Replica
from headstart.finetune.freeze import apply_freeze, param_groups, set_train_mode

log = logging.getLogger(__name__)

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


def train_one_epoch(model: nn.Module, loader, *, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler, scaler: torch.amp.GradScaler, ctx: StepContext, frozen: list[nn.Module],
                    epoch: int, epochs: int, replica: Replica = Replica()) -> dict:
    """One pass over this rank's share of the train loader; returns mean loss, accuracy, images and seconds
    (device-synchronised).

    The loss is checked for NaN/Inf without a host sync per step: a device flag records the first bad step
    and is read every NONFINITE_CHECK_EVERY steps and at the end, OR-ed over ranks so that all stop together.
    """
    set_train_mode(model, frozen)
    loss_sum = torch.zeros((), device=ctx.device)
    correct = torch.zeros((), device=ctx.device, dtype=torch.long)
    first_bad = torch.full((), -1, device=ctx.device, dtype=torch.long)
    n_seen = 0
    timer = Timer(device=ctx.device).__enter__()  # closed explicitly below: the loop may raise
    bar = ctx.bar(loader, desc=f"epoch {epoch + 1}/{epochs} train")
    for step, (images, labels, _, errors) in enumerate(bar):
        raise_bad_images(list(errors))
        x, y = ctx.inputs(images, labels)
        with ctx.autocast():
            logits = model(x)
        loss = criterion(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        with torch.no_grad():
            finite = torch.isfinite(loss)
            first_bad = torch.where((first_bad < 0) & ~finite, torch.tensor(step, device=ctx.device), first_bad)
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(dim=1) == y).sum()
        n_seen += len(y)
        if (step + 1) % NONFINITE_CHECK_EVERY == 0 or step + 1 == len(loader):
            if replica.any_rank((first_bad >= 0).long()):
                bar.close()
                raise NonFiniteLoss(epoch, int(first_bad) if int(first_bad) >= 0 else step)
            bar.set_postfix(loss=f"{float(loss_sum) / max(n_seen, 1):.4f}", refresh=False)
    timer.__exit__()
    return {"loss": float(loss_sum) / max(n_seen, 1), "accuracy": float(correct) / max(n_seen, 1),
            "images": n_seen, "seconds": timer.seconds}


@torch.inference_mode()
def evaluate_split(model: nn.Module, loader, *, criterion: nn.CrossEntropyLoss, ctx: StepContext,
                   desc: str = "eval", replica: Replica = Replica()) -> dict:
    """Loss, accuracy and softmax probabilities of one whole split, in the split's sample order.

    Outputs are kept per sample and merged across ranks (by sample position, padding dropped) before anything
    is computed from them, so under torchrun every rank gets the numbers a one-process evaluation gives. The
    loss is the class-weighted mean over the split, which is what `criterion` computes on one full batch.
    """
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {"position": [], "proba": [], "y_true": [], "loss": [], "weight": []}
    class_weight = criterion.weight
    for images, labels, positions, errors in ctx.bar(loader, desc=desc):
        raise_bad_images(list(errors))
        x, y = ctx.inputs(images, labels)
        with ctx.autocast():
            logits = model(x)
        logits = logits.float()
        parts["loss"].append(nn.functional.cross_entropy(logits, y, weight=class_weight, reduction="none").cpu())
        parts["weight"].append((class_weight[y] if class_weight is not None else torch.ones_like(y, dtype=torch.float)).cpu())
        parts["proba"].append(torch.softmax(logits, dim=1).cpu())
        parts["y_true"].append(labels)
        parts["position"].append(positions)
    split = replica.gather_split({key: torch.cat(values).numpy() for key, values in parts.items()},
                                 n=len(loader.dataset))
    proba = split["proba"].astype(np.float64)
    y_true = split["y_true"]
    loss = float(split["loss"].astype(np.float64).sum() / max(split["weight"].astype(np.float64).sum(), 1e-12))
    accuracy = float((proba.argmax(axis=1) == y_true).mean())
    return {"loss": loss, "accuracy": accuracy, "proba": proba, "y_true": y_true}


def run_finetune(*, data: str, runs_dir: str, config: FinetuneConfig, split_config: SplitConfig,
                 splits_from: str | None = None, resume: bool = False) -> RunRecord:
    """Fine-tune `config.backbone` on DATA, select the best epoch on val, evaluate test once, write the record.

    `train_seconds` in the record is the sum of the per-epoch wall times (train pass + val pass, as in a
    tutorial loop), over every epoch of the run including those before a resume; `eval_seconds` is the final
    val + test evaluation with the best weights.

    Under `torchrun` every rank runs this function: each trains on its shard with `config.batch_size` images
    per step (the global batch is world_size times that), evaluations are gathered across ranks, and only
    rank 0 writes checkpoints and the record. Every rank returns the same record.
    """
    config.validate()
    parse_threshold_rule(config.threshold_rule)
    check_name(config.backbone)  # before the data scan, so a typo fails at once
    replica = Replica.from_env()
    device = replica.device(resolve_device(config.device))
    ctx_dtype = training_dtype(config.precision, device)
    dataset = _split_dataset(data, split_config=split_config, splits_from=splits_from)
    by_split = _samples_by_split(dataset)
    data_hash = manifest_hash(dataset.samples, dataset.classes)
    replica.require_same({**config.to_dict(), "runs_dir": str(runs_dir), "resume": resume, "splits_from": splits_from,
                          "split": vars(split_config).copy(), "data (manifest hash)": data_hash})
    torch.manual_seed(config.seed)
    net, prep, info = create_model(config.backbone, num_classes=len(dataset.classes), weights=config.weights,
                                   image_size=config.image_size, seed=config.seed)
    ctx = StepContext(device=device, prep=prep, amp_dtype=ctx_dtype, progress=replica.is_main)
    net = net.to(device, memory_format=torch.channels_last)
    frozen = apply_freeze(net, name=config.backbone, mode=config.freeze)
    model = replica.wrap(net, device=device)  # what the train loop steps; `net` is what checkpoints hold

    variant = f"freeze-{config.freeze}" + (f"-{config.image_size}px" if config.image_size else "")
    run_id = make_run_id("finetune", config.backbone, None, config.seed, variant=variant)
    run_dir = Path(runs_dir) / run_id
    ckpt_dir = run_dir / "checkpoints"
    fingerprint = make_fingerprint(config, manifest_hash=data_hash, weights_sha256=info.get("weights_sha256", ""),
                                   world_size=replica.world_size)

    workers = loader_workers(config.workers, device)
    pin = device.type == "cuda"
    train_images = SplitImages(dataset.source, by_split["train"], prep, augment=config.augment)
    train_sampler = replica.train_sampler(len(train_images), seed=config.seed)
    # A final batch of one image would make BatchNorm's batch statistics undefined in train mode.
    train_loader = make_loader(train_images, train_sampler, batch_size=config.batch_size, workers=workers,
                               pin_memory=pin, drop_last=len(train_sampler) % config.batch_size == 1)
    eval_loaders = {
        split: make_loader(SplitImages(dataset.source, by_split[split], prep),
                           replica.eval_sampler(len(by_split[split]), seed=config.seed),
                           batch_size=config.batch_size, workers=workers, pin_memory=pin)
        for split in ("val", "test")
    }

    criterion = nn.CrossEntropyLoss(weight=_class_weights(by_split["train"], len(dataset.classes), config).to(device))
    optimizer, scheduler, scaler = make_optimization(net, config=config, steps_per_epoch=len(train_loader),
                                                     ctx=ctx)

    state = TrainState()
    if resume:  # every rank reads rank 0's file (RUNS must be on a file system all nodes share)
        checkpoint = load_checkpoint(_resume_point(ckpt_dir), expected_fingerprint=fingerprint)
        net.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["lr_scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        restore_rng_state(checkpoint["rng"])
        state = TrainState(epoch=checkpoint["epoch"] + 1, best_metric=checkpoint["best_metric"],
                           best_epoch=checkpoint["best_epoch"], history=list(checkpoint["history"]))
        log.info("resuming %s at epoch %d of %d", run_id, state.epoch + 1, config.epochs)
    elif (ckpt_dir / "last.pt").exists() and replica.is_main:
        log.warning("%s holds checkpoints of an earlier run; starting afresh and replacing them "
                    "(pass --resume to continue it instead)", ckpt_dir)

    log.info("fine-tuning %s (freeze %s) on %s: %d train / %d val / %d test images, %s, %s, %d workers%s",
             config.backbone, config.freeze, device, len(by_split["train"]), len(by_split["val"]),
             len(by_split["test"]), precision_name(ctx_dtype), "channels_last", workers,
             f", {replica.world_size} ranks x {config.batch_size} images per step" if replica.distributed else "")
    reset_peak_memory(device)
    with _determinism(config.deterministic):
        for epoch in range(state.epoch, config.epochs):
            if config.patience and epoch - state.best_epoch > config.patience:
                log.info("early stop: val %s has not improved for %d epochs", config.select_metric, config.patience)
                break
            train_sampler.set_epoch(epoch)
            try:
                train = train_one_epoch(model, train_loader, criterion=criterion, optimizer=optimizer,
                                        scheduler=scheduler, scaler=scaler, ctx=ctx, frozen=frozen,
                                        epoch=epoch, epochs=config.epochs, replica=replica)
            except NonFiniteLoss as exc:
                last = ckpt_dir / "last.pt"
                kept = f"the last good checkpoint is {last}" if last.exists() and epoch > 0 else "no checkpoint was written yet"
                raise TrainingError(f"{exc}; {kept}; lower --lr or use --precision fp32") from None
            train = replica.combine_train(train)
            with Timer(device=device) as val_timer:
                replica.sync_buffers(net)
                val = evaluate_split(net, eval_loaders["val"], criterion=criterion, ctx=ctx,
                                     desc=f"epoch {epoch + 1}/{config.epochs} val", replica=replica)
            val_auroc = _auroc(val["y_true"], val["proba"])
            entry = {
                "epoch": epoch + 1,
                "train_loss": train["loss"], "val_loss": val["loss"],
                "train_accuracy": train["accuracy"], "val_accuracy": val["accuracy"], "val_auroc": val_auroc,
                "seconds": train["seconds"] + val_timer.seconds,
                "images_per_second": train["images"] / train["seconds"] if train["seconds"] > 0 else float("nan"),
                "lr": optimizer.param_groups[0]["lr"],
            }
            entry = replica.broadcast(entry)  # rank 0's numbers (equal anyway), so every rank stops at the same epoch
            state.history.append(entry)
            improved = state.update(epoch, _selection_value(entry, config.select_metric))
            log.info("epoch %d/%d: train loss %.4f acc %.3f | val loss %.4f acc %.3f auroc %.3f | %.1fs, %.0f img/s%s",
                     epoch + 1, config.epochs, entry["train_loss"], entry["train_accuracy"], entry["val_loss"],
                     entry["val_accuracy"], val_auroc, entry["seconds"], entry["images_per_second"],
                     " (best)" if improved else "")
            checkpoint = {
                "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                "lr_scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "epoch": epoch, "config": config.to_dict(), "rng": capture_rng_state(),
                "best_metric": state.best_metric, "best_epoch": state.best_epoch,
                "history": state.history, "fingerprint": fingerprint,
            }
            if replica.is_main:
                # best before last: a kill in between leaves last.pt at the previous epoch, whose best.pt is
                # still valid, and the resumed epoch rewrites both. (The reverse order could leave last.pt naming
                # a best epoch that best.pt does not hold.)
                if improved:
                    save_checkpoint(ckpt_dir / "best.pt", checkpoint)
                    publish_copy(ckpt_dir / "best.pt", ckpt_dir / "last.pt")
                else:
                    save_checkpoint(ckpt_dir / "last.pt", checkpoint)
            replica.barrier()  # a rank that fails or is resumed next finds this epoch's files in place

        # Test is touched once, with the weights of the best val epoch and a threshold chosen on val.
        with Timer(device=device) as eval_timer:
            best = load_checkpoint(ckpt_dir / "best.pt", expected_fingerprint=fingerprint)
            net.load_state_dict(best["model"])
            outputs = {split: evaluate_split(net, loader, criterion=criterion, ctx=ctx, desc=f"final {split}",
                                             replica=replica)
                       for split, loader in eval_loaders.items()}

    binary = len(dataset.classes) == 2
    threshold = (choose_threshold(outputs["val"]["y_true"], outputs["val"]["proba"][:, 1], rule=config.threshold_rule)
                 if binary else None)
    metrics = {split: evaluate(out["y_true"], out["proba"], threshold=threshold,
                               n_boot=config.n_boot, seed=config.seed) for split, out in outputs.items()}
    history = state.history
    # Every epoch trains on the same images, so the overall rate is the harmonic mean of the epoch rates.
    rates = [h["images_per_second"] for h in history if h["images_per_second"] and math.isfinite(h["images_per_second"])]
    images_per_second = len(rates) / sum(1.0 / r for r in rates) if rates else float("nan")
    record = RunRecord(
        run_id=run_id, strategy="finetune", backbone=config.backbone, head=None,
        config={**config.to_dict(), "workers": workers, "precision_used": precision_name(ctx_dtype),
                "world_size": replica.world_size, "global_batch_size": config.batch_size * replica.world_size,
                "weights_tag": info.get("weights_tag", ""), "best_epoch": state.best_epoch + 1,
                "epochs_run": len(history), "splits_from": splits_from, "split": vars(split_config).copy(),
                "preprocessing": prep.to_dict()},
        metrics=metrics, history=history,
        timing={"extract_seconds": 0.0, "train_seconds": sum(h["seconds"] for h in history),
                "eval_seconds": eval_timer.seconds,
                "images_per_second": images_per_second,
                "peak_memory_mb": peak_memory_mb(device), "device": describe_device(device),
                "train_seconds_includes": "per-epoch train pass + val pass, all epochs (incl. before a resume)"},
        predictions={split: {"ids": [s.id for s in by_split[split]], "y_true": out["y_true"], "proba": out["proba"]}
                     for split, out in outputs.items()},
        threshold=threshold, seed=config.seed,
        dataset={"manifest_hash": data_hash, "classes": dataset.classes, "data": str(data)},
    )
    if replica.is_main:
        write_record(runs_dir, record)
    replica.close()
    return record


@dataclass
class TrainState:
    """Where training stands; all of it goes into the checkpoint."""

    epoch: int = 0  # next epoch to run (0-based)
    best_metric: float = -math.inf  # larger is better (loss is negated)
    best_epoch: int = -1
    history: list = None  # type: ignore[assignment]

    def __post_init__(self):
        self.history = [] if self.history is None else self.history

    def update(self, epoch: int, value: float) -> bool:
        """Record the epoch's val metric; True when it is the best so far (NaN never is, except first)."""
        if self.best_epoch < 0 or (math.isfinite(value) and value > self.best_metric):
            self.best_metric, self.best_epoch = value, epoch
            return True
        return False


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


def loader_workers(requested: int | None, device: torch.device) -> int:
    """Decode processes for the fine-tune loaders: as asked, else `device.default_workers` on a GPU and none
    on a CPU.

    On a CPU the network already runs one intra-op thread per core; a decode process beside them oversubscribes
    the cores, and each OpenMP barrier of a step then waits for a descheduled thread. Decoding in the main
    process costs little: on the 2-core CI machine (resnet18, 64 px phantoms) decode + augmentation ran at
    ~1,600 images/s against ~50 trained, and three interleaved epochs trained at 9-50 images/s with one
    worker against 37-52 without.
    """
    if requested is not None:
        return requested
    return default_workers(device) if device.type == "cuda" else 0


def training_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """As `device.autocast_dtype`, except that `auto` on CUDA prefers bf16 when the card supports it: training
    in bf16 needs no loss scaling and cannot overflow, unlike fp16 (inference in extract is fine with fp16)."""
    if precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return autocast_dtype(precision, device)


def _split_dataset(data: str, *, split_config: SplitConfig, splits_from: str | None) -> Dataset:
    """The same splits as extract: derived with the same SplitConfig, or copied from an existing cache."""
    if splits_from is None:
        return build_dataset(data, split_config=split_config, find_duplicates=False)  # extract records them
    with FeatureCache(splits_from) as cache:
        ids, splits, labels, classes = list(cache.ids), list(cache.splits), cache.labels.tolist(), cache.classes
    source = load_source(data, group_pattern=split_config.group_pattern)
    by_id = {s.id: s for s in source.samples}
    missing = [i for i in ids if i not in by_id]
    extra = len(by_id) - (len(ids) - len(missing))
    if missing or extra:
        example = f" (e.g. {missing[0]!r})" if missing else ""
        raise CacheMismatchError(
            f"--splits-from {splits_from}: {len(missing)} cache ids are not in {data}{example} and {extra} images of "
            f"{data} are not in the cache; pass the DATA the cache was extracted from"
        )
    relabelled = [i for i, label in zip(ids, labels) if by_id[i].label != label]
    if list(classes) != list(source.classes) or relabelled:
        raise CacheMismatchError(f"--splits-from {splits_from}: the cache's classes {list(classes)} or labels "
                                 f"({len(relabelled)} differ) do not match {data} (classes {source.classes}); "
                                 "pass the DATA the cache was extracted from")
    samples = [replace(by_id[i], split=str(split)) for i, split in zip(ids, splits)]
    return Dataset(source=source, samples=samples, classes=source.classes)


def _samples_by_split(dataset: Dataset) -> dict[str, list[Sample]]:
    by_split = {split: [s for s in dataset.samples if s.split == split] for split in ("train", "val", "test")}
    empty = [split for split, samples in by_split.items() if not samples]
    if empty:
        raise DataError(f"the {' and '.join(empty)} split(s) of the data set are empty; fine-tuning needs train, "
                        "val and test images; add images or adjust --val-fraction/--test-fraction")
    return by_split


def _class_weights(samples: list[Sample], n_classes: int, config: FinetuneConfig) -> torch.Tensor:
    """`balanced`: the scikit-learn formula, so minority errors cost as much in total (same rule as the heads)."""
    return torch.from_numpy(class_weights([s.label for s in samples], n_classes, config.class_weight))


def _auroc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Val AUROC for the history (the same metric code as the final evaluation; NaN with one class)."""
    return float(compute_metrics(y_true, proba)["auroc"])


def _resume_point(ckpt_dir: Path) -> Path:
    """last.pt, unless a kill fell between writing best.pt and linking it as last.pt: then best.pt is newer."""
    last, best = ckpt_dir / "last.pt", ckpt_dir / "best.pt"
    if best.exists() and (not last.exists() or best.stat().st_mtime_ns > last.stat().st_mtime_ns
                          and not os.path.samefile(best, last)):
        return best
    return last


def _selection_value(entry: dict, metric: str) -> float:
    return {"auroc": entry["val_auroc"], "accuracy": entry["val_accuracy"], "loss": -entry["val_loss"]}[metric]


@contextlib.contextmanager
def _determinism(enabled: bool) -> Iterator[None]:
    """Deterministic kernels on request (resume then reproduces an uninterrupted run); otherwise let cuDNN
    benchmark convolution algorithms, since input sizes are fixed. Restores the global flags afterwards."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
             torch.backends.cudnn.deterministic)
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.benchmark = not enabled
    torch.backends.cudnn.deterministic = enabled
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=True)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[1], saved[2]

