"""Fine-tune costs, measured side by side in one run (medians of repeats; no assertions).

(a) Loop overhead: headstart's `train_one_epoch` against a bare PyTorch loop with the same settings (same model,
    AdamW groups, schedule, autocast dtype, GradScaler, channels_last, on-device normalisation) on the same
    pre-decoded uint8 batches, so only the loops differ. Target: headstart / bare >= 0.9.
(a2) Input pipeline: the same comparison, but headstart's epoch reads generated phantom JPEGs through its real
    loader (decode, augmentation, default worker count) while the bare loop still gets pre-decoded batches, so
    decode cost and any oversubscription of the cores by decode processes show up. Target: >= 0.9.
(b) Strategy timing on ../shared/data/kaggle_cxr_224 (skipped with a message when absent): one extraction, one
    head sweep on the cache, and one fine-tune epoch (train + val pass), for each backbone; the break-even is
    how many fine-tune epochs cost as much as extract + sweep. `--limit N` keeps it short on a CPU.

Random weights throughout: speed does not depend on the weight values, and CI machines cannot download them.

    .venv/bin/python benchmarks/finetune.py [--backbones resnet18 densenet121] [--n 64] [--repeats 3]
                                            [--limit 400] [--device auto] [--skip-strategies]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from headstart.backbones.registry import create_model
from headstart.data.types import SplitConfig
from headstart.device import resolve_device
from headstart.extract.config import ExtractConfig
from headstart.extract.preprocess import normalize_batch
from headstart.extract.runner import run_extract
from headstart.finetune.config import FinetuneConfig
from headstart.finetune.freeze import apply_freeze
from headstart.heads.runner import HeadsConfig, run_heads
from headstart.data.dataset import build_dataset
from headstart.data.synthetic import make_phantom_dataset
from headstart.finetune.config import AugmentConfig
from headstart.finetune.data import EpochSampler, SplitImages, make_loader
from headstart.finetune.train import (StepContext, loader_workers, make_optimization, run_finetune, train_one_epoch,
                                      training_dtype)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kaggle_cxr_224"


def synthetic_batches(*, n: int, batch_size: int, size: int, seed: int = 0) -> list[tuple]:
    """Pre-decoded uint8 batches shaped like the loader's output: (images, labels, positions, errors)."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        images = torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, 2, (b,), generator=g)
        batches.append((images, labels, torch.arange(start, start + b), [""] * b))
    return batches


def bare_epoch(model: nn.Module, batches: list[tuple], *, optimizer, scheduler, scaler, ctx: StepContext) -> float:
    """The loop a user would write by hand, with the same optimisation settings; returns seconds."""
    criterion = nn.CrossEntropyLoss()
    model.train()
    _sync(ctx.device)
    start = time.perf_counter()
    for images, labels, _, _ in batches:
        x = normalize_batch(images, ctx.prep, device=ctx.device)
        y = labels.to(ctx.device, non_blocking=True)
        with ctx.autocast():
            logits = model(x)
        loss = criterion(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
    _sync(ctx.device)
    return time.perf_counter() - start


def loop_overhead(backbone: str, *, n: int, batch_size: int, size: int, repeats: int, device: torch.device) -> None:
    config = FinetuneConfig(backbone=backbone, weights="random", batch_size=batch_size, image_size=size, epochs=100)
    model, prep, _ = create_model(backbone, num_classes=2, weights="random", image_size=size)
    model = model.to(device, memory_format=torch.channels_last)
    frozen = apply_freeze(model, name=backbone, mode="none")
    ctx = StepContext(device=device, prep=prep, amp_dtype=training_dtype("auto", device))
    batches = synthetic_batches(n=n, batch_size=batch_size, size=prep.input_size)
    optimizer, scheduler, scaler = make_optimization(model, config=config, steps_per_epoch=len(batches), ctx=ctx)
    criterion = nn.CrossEntropyLoss()
    bare_epoch(model, batches[:1], optimizer=optimizer, scheduler=scheduler, scaler=scaler, ctx=ctx)  # warm-up
    bare, ours = [], []
    for r in range(repeats):  # alternate, so drift in machine load hits both loops alike
        bare.append(n / bare_epoch(model, batches, optimizer=optimizer, scheduler=scheduler, scaler=scaler, ctx=ctx))
        stats = train_one_epoch(model, batches, criterion=criterion, optimizer=optimizer, scheduler=scheduler,
                                scaler=scaler, ctx=ctx, frozen=frozen, epoch=r, epochs=repeats)
        ours.append(stats["images"] / stats["seconds"])
    b, h = statistics.median(bare), statistics.median(ours)
    print(f"(a) {backbone} @ {prep.input_size}px, batch {batch_size}, {n} images, {device}, "
          f"{ctx.amp_dtype or 'fp32'}: bare loop {b:.1f} img/s | headstart train_one_epoch {h:.1f} img/s | "
          f"ratio {h / b:.3f} (target >= 0.9; medians of {repeats})")


def pipeline_overhead(backbone: str, *, n: int, batch_size: int, size: int, repeats: int, device: torch.device,
                      tmp: Path) -> None:
    """(a2): headstart's epoch over real files and its default loader vs the bare loop over decoded tensors."""
    # extra train phantoms, since the grouped val carve-out takes some of them
    make_phantom_dataset(tmp / "phantoms", n_train=n + n // 2 + 8, n_test=8, image_size=size, seed=0)
    dataset = build_dataset(str(tmp / "phantoms"), split_config=SplitConfig())
    samples = [s for s in dataset.samples if s.split == "train"][:n]
    config = FinetuneConfig(backbone=backbone, weights="random", batch_size=batch_size, image_size=size, epochs=100)
    model, prep, _ = create_model(backbone, num_classes=len(dataset.classes), weights="random", image_size=size)
    model = model.to(device, memory_format=torch.channels_last)
    frozen = apply_freeze(model, name=backbone, mode="none")
    ctx = StepContext(device=device, prep=prep, amp_dtype=training_dtype("auto", device), progress=False)
    workers = loader_workers(None, device)
    images = SplitImages(dataset.source, samples, prep, augment=AugmentConfig())
    loader = make_loader(images, EpochSampler(len(images), seed=0, shuffle=True), batch_size=batch_size,
                         workers=workers, pin_memory=device.type == "cuda")
    batches = [batch for batch in loader]  # the same images, decoded once up front for the bare loop
    optimizer, scheduler, scaler = make_optimization(model, config=config, steps_per_epoch=len(batches), ctx=ctx)
    criterion = nn.CrossEntropyLoss()
    bare_epoch(model, batches[:1], optimizer=optimizer, scheduler=scheduler, scaler=scaler, ctx=ctx)  # warm-up
    bare, ours = [], []
    for r in range(repeats):
        bare.append(len(samples) / bare_epoch(model, batches, optimizer=optimizer, scheduler=scheduler,
                                              scaler=scaler, ctx=ctx))
        loader.sampler.set_epoch(r)
        stats = train_one_epoch(model, loader, criterion=criterion, optimizer=optimizer, scheduler=scheduler,
                                scaler=scaler, ctx=ctx, frozen=frozen, epoch=r, epochs=repeats)
        ours.append(stats["images"] / stats["seconds"])
    b, h = statistics.median(bare), statistics.median(ours)
    print(f"(a2) {backbone} @ {prep.input_size}px from {len(samples)} phantom JPEGs, {workers} loader workers, "
          f"{device}: bare loop on decoded tensors {b:.1f} img/s | headstart epoch from files {h:.1f} img/s | "
          f"ratio {h / b:.3f} (target >= 0.9; medians of {repeats})")


def limited_manifest(root: Path, *, limit: int | None, out: Path) -> Path:
    """A path,label CSV over kaggle_cxr_224/train, the first `limit` images per class in sorted order."""
    lines = ["path,label"]
    for cls_dir in sorted(p for p in (root / "train").iterdir() if p.is_dir()):
        files = sorted(cls_dir.glob("*.jpeg"))
        if limit:
            files = files[: max(1, limit // 2)]
        lines += [f"{f},{cls_dir.name}" for f in files]
    out.write_text("\n".join(lines) + "\n")
    return out


def strategy_timing(backbones: list[str], *, limit: int | None, device: str, repeats: int, tmp: Path) -> None:
    if not DATA.is_dir():
        print(f"(b) skipped: {DATA} is absent")
        return
    manifest = limited_manifest(DATA, limit=limit, out=tmp / "manifest.csv")
    n_images = len(manifest.read_text().splitlines()) - 1
    print(f"(b) {n_images} images of {DATA} ({'--limit ' + str(limit) if limit else 'all'}), device {device}, "
          f"medians of {repeats}")
    split = SplitConfig()
    for backbone in backbones:
        extract_s, heads_s, epoch_s = [], [], []
        for r in range(repeats):
            cache = tmp / f"{backbone}-{r}.h5"
            cfg = ExtractConfig(backbones=[backbone], weights="random", device=device, split=split)
            start = time.perf_counter()
            run_extract(data=str(manifest), output=str(cache), config=cfg)
            extract_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            run_heads(cache_path=cache, runs_dir=tmp / f"heads-{r}",
                      config=HeadsConfig(feature_sets=[backbone], device=device, n_boot=200), progress=False)
            heads_s.append(time.perf_counter() - start)
            cfg = FinetuneConfig(backbone=backbone, weights="random", epochs=1, device=device, patience=0, n_boot=200)
            record = run_finetune(data=str(manifest), runs_dir=str(tmp / f"ft-{r}"), config=cfg, split_config=split)
            epoch_s.append(record.history[0]["seconds"])
        med = {k: statistics.median(v) if v else float("nan")
               for k, v in (("extract", extract_s), ("heads", heads_s), ("epoch", epoch_s))}
        once = med["extract"] + med["heads"]
        print(f"    {backbone:12s} extract {med['extract']:8.1f} s | head sweep {med['heads']:7.1f} s | "
              f"fine-tune epoch (train+val) {med['epoch']:8.1f} s | one epoch = {med['epoch'] / med['heads']:.2f} "
              f"head sweeps | extract + sweep = {once / med['epoch']:.2f} fine-tune epochs")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "densenet121"])
    parser.add_argument("--n", type=int, default=64, help="images per timed epoch in (a)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=400, help="images used in (b); 0 = all 5,216")
    parser.add_argument("--strategy-repeats", type=int, default=1, help="repeats of each (b) measurement")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-strategies", action="store_true", help="run (a) and (a2) only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    device = resolve_device(args.device)
    for backbone in args.backbones:
        loop_overhead(backbone, n=args.n, batch_size=args.batch_size, size=args.image_size, repeats=args.repeats,
                      device=device)
    with tempfile.TemporaryDirectory(prefix="headstart-bench-ft-") as tmp:
        for backbone in args.backbones:
            pipeline_overhead(backbone, n=args.n, batch_size=args.batch_size, size=args.image_size,
                              repeats=args.repeats, device=device, tmp=Path(tmp) / backbone)
        if not args.skip_strategies:
            strategy_timing(args.backbones, limit=args.limit or None, device=args.device, repeats=args.strategy_repeats,
                            tmp=Path(tmp))


if __name__ == "__main__":
    from result import run  # benchmarks/result.py: --json PATH writes the output with command, date, machine, load

    run(main)
