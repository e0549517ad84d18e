"""The fine-tune contrast: train a backbone + head end to end on the same splits, metrics and timers as heads.

`run_finetune` runs the phases of torchvision's classification reference, each a function here: `setup` (data,
model, loaders, optimizer), `resume_state` (from the last checkpoint; else `fresh_state`), `train_epochs`
(`train_one_epoch`, then the val pass of `evaluate_split`, then a checkpoint, per epoch) and `finish` (the best
epoch's weights, then `evaluation.finish.finish_run`). One checkpoint dict per file; resume continues at
`epoch + 1`. Distributed training plugs in at one seam, `finetune.distributed.Replica`. The caller's RNGs are kept.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from headstart.backbones.registry import check_name, create_model
from headstart.backbones.weights import torchvision_gflops
from headstart.cache.view import dataset_with_cache_splits
from headstart.data.dataset import build_dataset, manifest_hash
from headstart.data.draws import draw_samples, parse_size
from headstart.data.types import Dataset, Sample, SplitConfig
from headstart.device import default_workers, precision_name, resolve_device
from headstart.errors import DataError, TrainingError
from headstart.evaluation.finish import FinalEvaluation, RunOutline, SplitPredictions, finish_run
from headstart.evaluation.records import RunRecord, make_run_id
from headstart.evaluation.thresholds import parse_threshold_rule
from headstart.evaluation.timing import Timer, reset_peak_memory
from headstart.finetune.checkpoint import (capture_rng_state, load_checkpoint, make_fingerprint,
                                           preserved_rng_state, publish_copy, restore_rng_state, save_checkpoint)
from headstart.finetune.config import FinetuneConfig
from headstart.finetune.data import EpochSampler, SplitImages, make_loader
from headstart.finetune.distributed import Replica
from headstart.finetune.epoch import (NonFiniteLoss, StepContext, TrainState, evaluate_split, make_optimization,
                                      train_one_epoch, training_dtype)
from headstart.finetune.freeze import apply_freeze
from headstart.finetune.objective import Objective, make_objective, selection_value

log = logging.getLogger(__name__)


@dataclass
class FinetuneRun:
    """Everything `setup` builds for one run; the later phases read it instead of a dozen parameters."""

    config: FinetuneConfig
    replica: Replica
    ctx: StepContext  # device, preprocessing, precision
    dataset: Dataset
    by_split: dict[str, list[Sample]]  # train / val / test samples, in loader order
    data_hash: str  # manifest hash of the samples and splits
    origin: dict  # where the data, splits and train images came from: data, split, splits_from, n_train, draw_seed
    net: nn.Module  # the model the checkpoints hold
    model: nn.Module  # what the train loop steps: `net`, wrapped in DDP under torchrun
    frozen: list[nn.Module]  # modules kept in eval mode by --freeze
    info: dict  # the backbone's weights tag and sha256
    run_id: str
    ckpt_dir: Path
    fingerprint: dict  # what a checkpoint must match to be resumed
    workers: int  # decode processes per loader
    train_sampler: EpochSampler
    train_loader: torch.utils.data.DataLoader
    eval_loaders: dict[str, torch.utils.data.DataLoader]  # val, test
    criterion: Objective  # loss, link and val score of the task (finetune.objective), weighted as the heads'
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler


def run_finetune(*, data: str, runs_dir: str, config: FinetuneConfig, split_config: SplitConfig,
                 splits_from: str | None = None, resume: bool = False) -> RunRecord:
    """Fine-tune `config.backbone` on DATA, select the best epoch on val, evaluate test once, write the record.

    `train_seconds` in the record is the sum of the per-epoch wall times (train pass + val pass, as in a
    tutorial loop), over every epoch of the run including those before a resume; `eval_seconds` is the final
    evaluation with the best weights (val + test passes, threshold and intervals), as for a cached head.

    Under `torchrun` every rank runs this function: each trains on its shard with `config.batch_size` images
    per step (the global batch is world_size times that), evaluations are gathered across ranks, and only
    rank 0 writes checkpoints and the record. Every rank returns the same record.
    """
    with preserved_rng_state():  # seeded below; the caller's generators come back untouched
        run = setup(data=data, runs_dir=runs_dir, config=config, split_config=split_config, splits_from=splits_from,
                    resume=resume)
        state = resume_state(run) if resume else fresh_state(run)
        with _determinism(config.deterministic):
            train_epochs(run, state)
            record = finish(run, state, runs_dir=runs_dir)
    run.replica.close()
    return record


def setup(*, data: str, runs_dir: str, config: FinetuneConfig, split_config: SplitConfig, splits_from: str | None,
          resume: bool) -> FinetuneRun:
    """Validate, split the data, build the model, loaders, loss and optimizer; every rank builds the same."""
    config.validate()
    parse_threshold_rule(config.threshold_rule)
    check_name(config.backbone)  # before the data scan, so a typo fails at once
    replica = Replica.from_env()
    device = replica.device(resolve_device(config.device))
    if splits_from is None:
        dataset = build_dataset(data, split_config=split_config, find_duplicates=False,  # extract records them
                                source_options=config.source, warn_rare=False)  # the objective warns per policy
    else:
        dataset = dataset_with_cache_splits(data, splits_from, group_pattern=split_config.group_pattern,
                                            options=config.source)
    by_split = _samples_by_split(dataset)
    data_hash = manifest_hash(dataset.samples, dataset.classes)
    train_draw = {"n_train": len(by_split["train"]), "draw_seed": None}
    if config.train_size is not None:  # the draw `headstart curve` makes at this size and seed (data.draws)
        by_split["train"], draw = draw_samples(by_split["train"], parse_size(config.train_size), seed=config.seed,
                                               n_classes=len(dataset.classes))
        train_draw = {"n_train": draw.n, "draw_seed": draw.seed, "n_patients": draw.n_patients,
                      "per_class": list(draw.per_class)}
    replica.require_same({**config.to_dict(), "runs_dir": str(runs_dir), "resume": resume, "splits_from": splits_from,
                          "split": vars(split_config).copy(), "data (manifest hash)": data_hash})
    torch.manual_seed(config.seed)  # dropout and the rest of the global stream (run_finetune restores it)
    criterion = make_objective(dataset, by_split, config, device)  # `balanced`: weighted as the heads' loss
    net, prep, info = create_model(config.backbone, num_classes=len(dataset.classes), weights=config.weights,
                                   image_size=config.image_size, seed=config.seed)
    prep = prep.with_crop(config.crop)  # the plain view of a cache extracted with the same --crop
    ctx = StepContext(device=device, prep=prep, amp_dtype=training_dtype(config.precision, device), progress=replica.is_main)
    net = net.to(device, memory_format=torch.channels_last)
    frozen = apply_freeze(net, name=config.backbone, mode=config.freeze)
    model = replica.wrap(net, device=device)  # what the train loop steps; `net` is what checkpoints hold
    variant = (f"freeze-{config.freeze}" + (f"-{config.image_size}px" if config.image_size else "")
               + ("" if config.crop == "center" else f"-crop-{config.crop}")
               + (f"-train-{parse_size(config.train_size).slug}" if config.train_size else "") + criterion.variant())
    run_id = make_run_id("finetune", config.backbone, None, config.seed, variant=variant)

    workers = loader_workers(config.workers, device)
    pin = device.type == "cuda"
    train_images = SplitImages(dataset.source, by_split["train"], prep, augment=config.augment,
                               targets=criterion.targets("train"))
    train_sampler = replica.train_sampler(len(train_images), seed=config.seed)
    # A final batch of one image would make BatchNorm's batch statistics undefined in train mode.
    train_loader = make_loader(train_images, train_sampler, batch_size=config.batch_size, workers=workers,
                               pin_memory=pin, drop_last=len(train_sampler) % config.batch_size == 1)
    eval_loaders = {
        split: make_loader(SplitImages(dataset.source, by_split[split], prep, targets=criterion.targets(split)),
                           replica.eval_sampler(len(by_split[split]), seed=config.seed),
                           batch_size=config.batch_size, workers=workers, pin_memory=pin)
        for split in ("val", "test")
    }
    optimizer, scheduler, scaler = make_optimization(net, config=config, steps_per_epoch=len(train_loader), ctx=ctx)
    return FinetuneRun(
        config=config, replica=replica, ctx=ctx, dataset=dataset, by_split=by_split, data_hash=data_hash,
        origin={"data": str(data), "splits_from": splits_from, "split": vars(split_config).copy(), **train_draw},
        net=net, model=model, frozen=frozen, info=info, run_id=run_id,
        ckpt_dir=Path(runs_dir) / run_id / "checkpoints",
        fingerprint=make_fingerprint(config, manifest_hash=data_hash, weights_sha256=info.get("weights_sha256", ""),
                                     world_size=replica.world_size),
        workers=workers, train_sampler=train_sampler, train_loader=train_loader, eval_loaders=eval_loaders,
        criterion=criterion, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
    )


def resume_state(run: FinetuneRun) -> TrainState:
    """Load the last checkpoint into the run; every rank reads rank 0's file (RUNS must be shared by all nodes)."""
    checkpoint = load_checkpoint(_resume_point(run.ckpt_dir), expected_fingerprint=run.fingerprint)
    run.net.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["lr_scheduler"])
    run.scaler.load_state_dict(checkpoint["scaler"])
    restore_rng_state(checkpoint["rng"])
    state = TrainState(epoch=checkpoint["epoch"] + 1, best_metric=checkpoint["best_metric"],
                       best_epoch=checkpoint["best_epoch"], history=list(checkpoint["history"]))
    log.info("resuming %s at epoch %d of %d", run.run_id, state.epoch + 1, run.config.epochs)
    return state


def fresh_state(run: FinetuneRun) -> TrainState:
    if (run.ckpt_dir / "last.pt").exists() and run.replica.is_main:
        log.warning("%s holds checkpoints of an earlier run; starting afresh and replacing them "
                    "(pass --resume to continue it instead)", run.ckpt_dir)
    return TrainState()


def train_epochs(run: FinetuneRun, state: TrainState) -> None:
    """Train from `state.epoch` until the last epoch or early stopping; checkpoint after every epoch."""
    config, by_split = run.config, run.by_split
    log.info("fine-tuning %s (freeze %s) on %s: %d train / %d val / %d test images, %s, %s, %d workers%s",
             config.backbone, config.freeze, run.ctx.device, len(by_split["train"]), len(by_split["val"]),
             len(by_split["test"]), precision_name(run.ctx.amp_dtype), "channels_last", run.workers,
             f", {run.replica.world_size} ranks x {config.batch_size} images per step" if run.replica.distributed else "")
    reset_peak_memory(run.ctx.device)
    for epoch in range(state.epoch, config.epochs):
        if config.patience and epoch - state.best_epoch > config.patience:
            log.info("early stop: val %s has not improved for %d epochs", config.select_metric, config.patience)
            break
        improved = _train_and_validate(run, state, epoch)
        _save_checkpoint(run, state, epoch, improved=improved)


def _train_and_validate(run: FinetuneRun, state: TrainState, epoch: int) -> bool:
    """One epoch: train, evaluate val, append the history entry; True when val improved."""
    config, replica = run.config, run.replica
    run.train_sampler.set_epoch(epoch)
    try:
        train = train_one_epoch(run.model, run.train_loader, criterion=run.criterion, optimizer=run.optimizer,
                                scheduler=run.scheduler, scaler=run.scaler, ctx=run.ctx, frozen=run.frozen,
                                epoch=epoch, epochs=config.epochs, replica=replica)
    except NonFiniteLoss as exc:
        last = run.ckpt_dir / "last.pt"
        kept = f"the last good checkpoint is {last}" if last.exists() and epoch > 0 else "no checkpoint was written yet"
        raise TrainingError(f"{exc}; {kept}; lower --lr or use --precision fp32") from None
    train = replica.combine_train(train)
    with Timer(device=run.ctx.device) as val_timer:
        replica.sync_buffers(run.net)
        val = evaluate_split(run.net, run.eval_loaders["val"], criterion=run.criterion, ctx=run.ctx,
                             desc=f"epoch {epoch + 1}/{config.epochs} val", replica=replica)
    entry = {
        "epoch": epoch + 1,
        "train_loss": train["loss"], "val_loss": val["loss"],
        "train_accuracy": train["accuracy"], "val_accuracy": val["accuracy"],
        "val_auroc": run.criterion.auroc(val["y_true"], val["proba"]),  # NaN with one class; multi-label: macro
        "seconds": train["seconds"] + val_timer.seconds,
        "images_per_second": train["images"] / train["seconds"] if train["seconds"] > 0 else float("nan"),
        "lr": run.optimizer.param_groups[0]["lr"],
    }
    # rank 0's numbers (equal anyway), so every rank stops at the same epoch
    entry, value = replica.broadcast((entry, selection_value(run.criterion, entry, val, config)))
    state.history.append(entry)
    improved = state.update(epoch, value)
    log.info("epoch %d/%d: train loss %.4f acc %.3f | val loss %.4f acc %.3f auroc %.3f | %.1fs, %.0f img/s%s",
             epoch + 1, config.epochs, entry["train_loss"], entry["train_accuracy"], entry["val_loss"],
             entry["val_accuracy"], entry["val_auroc"], entry["seconds"], entry["images_per_second"],
             " (best)" if improved else "")
    return improved


def _save_checkpoint(run: FinetuneRun, state: TrainState, epoch: int, *, improved: bool) -> None:
    checkpoint = {
        "model": run.net.state_dict(), "optimizer": run.optimizer.state_dict(),
        "lr_scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(),
        "epoch": epoch, "config": run.config.to_dict(), "rng": capture_rng_state(),
        "best_metric": state.best_metric, "best_epoch": state.best_epoch,
        "history": state.history, "fingerprint": run.fingerprint,
    }
    if run.replica.is_main:
        # best before last: a kill in between leaves last.pt at the previous epoch, whose best.pt is still valid, and
        # the resumed epoch rewrites both (the reverse could leave last.pt naming a best epoch best.pt lacks).
        if improved:
            save_checkpoint(run.ckpt_dir / "best.pt", checkpoint)
            publish_copy(run.ckpt_dir / "best.pt", run.ckpt_dir / "last.pt")
        else:
            save_checkpoint(run.ckpt_dir / "last.pt", checkpoint)
    run.replica.barrier()  # a rank that fails or is resumed next finds this epoch's files in place


def finish(run: FinetuneRun, state: TrainState, *, runs_dir: str) -> RunRecord:
    """Test is touched once, with the weights of the best val epoch and a threshold chosen on val."""
    config, replica, history = run.config, run.replica, state.history
    state.require_best(config.select_metric)

    def predict() -> dict[str, SplitPredictions]:
        best = load_checkpoint(run.ckpt_dir / "best.pt", expected_fingerprint=run.fingerprint)
        run.net.load_state_dict(best["model"])
        outputs = {}
        for split, loader in run.eval_loaders.items():
            out = evaluate_split(run.net, loader, criterion=run.criterion, ctx=run.ctx, desc=f"final {split}",
                                 replica=replica)
            outputs[split] = run.criterion.predictions(run.by_split[split], out["y_true"], out["proba"])
        return outputs

    # Every epoch trains on the same images, so the overall rate is the harmonic mean of the epoch rates.
    rates = [h["images_per_second"] for h in history if h["images_per_second"] and math.isfinite(h["images_per_second"])]
    outline = RunOutline(
        run_id=run.run_id, strategy="finetune", backbone=config.backbone, head=None, seed=config.seed,
        config={**config.to_dict(), "workers": run.workers, "precision_used": precision_name(run.ctx.amp_dtype),
                "world_size": replica.world_size, "global_batch_size": config.batch_size * replica.world_size,
                "weights_tag": run.info.get("weights_tag", ""), "best_epoch": state.best_epoch + 1,
                "epochs_run": len(history), **{k: v for k, v in run.origin.items() if k != "data"},
                "preprocessing": run.ctx.prep.to_dict(), "gflops": torchvision_gflops(config.backbone),
                **run.criterion.describe()},
        dataset={"manifest_hash": run.data_hash, "classes": run.dataset.classes, "data": run.origin["data"],
                 "task": run.dataset.task, **({"labels": run.dataset.classes} if run.dataset.task == "multilabel" else {})},
        history=history,
        timing={"extract_seconds": 0.0, "train_seconds": sum(h["seconds"] for h in history),
                "images_per_second": len(rates) / sum(1.0 / r for r in rates) if rates else float("nan"),
                "train_seconds_includes": "per-epoch train pass + val pass, all epochs (incl. before a resume)"},
    )
    final = FinalEvaluation(threshold_rule=config.threshold_rule, n_boot=config.n_boot, device=run.ctx.device,
                            write=replica.is_main, task=run.criterion.task)
    return finish_run(predict, outline=outline, final=final, runs_dir=runs_dir)


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


def _samples_by_split(dataset: Dataset) -> dict[str, list[Sample]]:
    by_split = {split: [s for s in dataset.samples if s.split == split] for split in ("train", "val", "test")}
    empty = [split for split, samples in by_split.items() if not samples]
    if empty:
        raise DataError(f"the {' and '.join(empty)} split(s) of the data set are empty; fine-tuning needs train, "
                        "val and test images; add images or adjust --val-fraction/--test-fraction")
    return by_split


def _resume_point(ckpt_dir: Path) -> Path:
    """last.pt, unless a kill fell between writing best.pt and linking it as last.pt: then best.pt is newer."""
    last, best = ckpt_dir / "last.pt", ckpt_dir / "best.pt"
    if best.exists() and (not last.exists() or best.stat().st_mtime_ns > last.stat().st_mtime_ns
                          and not os.path.samefile(best, last)):
        return best
    return last


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
