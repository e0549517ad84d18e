"""Stage two's speed claim, measured side by side in one run: a whole head sweep costs a fraction of ONE epoch
of the tutorial-style frozen-backbone path.

(a) the sweep: `run_heads` with the default grid, all four heads x 3 seeds, on a 5,216 x 1,024 float16 cache
    (synthetic by default, or a real one with --cache). Reported as the sum of the runs' `train_seconds`
    (fitting and val-scoring every config) and as the wall time of the whole call (plus threshold choice,
    1,000-resample bootstrap intervals on val and test, and record writing).
(b) one cached epoch: one epoch of a linear head over 5,216 cached rows on a device-resident tensor.
(c) one frozen epoch, as the PyTorch transfer-learning tutorial's "ConvNet as fixed feature extractor" runs
    it: ImageFolder-style PIL decode of every JPEG, Resize(256)/CenterCrop(224)/ToTensor/Normalize, NCHW
    fp32, ResNet18 (random weights: speed does not depend on weight values) left in train mode so BatchNorm
    runs in batch-statistics mode, torch.no_grad on the backbone only, then fc forward, backward and SGD step.
    Throughput is measured on a few hundred real JPEGs from ../shared/data/kaggle_cxr_224 (skipped with a
    message when absent) and scaled to 5,216 images. Measured at the tutorial's batch size 4 and at 64.

Prints the ratios a/c (target < 0.25) and b/c; asserts nothing.

    .venv/bin/python benchmarks/heads.py [--cache CACHE.h5 [-b NAME]] [--rows 5216] [--dim 1024] [--seeds 3]
                                         [--sweep default] [--frozen-images 384] [--device auto]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from headstart.cache import CacheWriter, FeatureCache, FeatureSetSpec, SamplesTable, compute_fingerprint, compute_samples_sha256
from headstart.device import resolve_device
from headstart.evaluation.timing import Timer, describe_device
from headstart.heads.batched import TorchHeadConfig, TrainSettings, train_batched
from headstart.heads.runner import HeadsConfig, run_heads
from headstart.heads.summary import summary_table
from headstart.heads.sweep import HEADS, get_sweep

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KAGGLE_ROWS = 5216  # images in the Kaggle pneumonia train split: one epoch of the tutorial path


def synthetic_cache(path: Path, *, rows: int, dim: int, seed: int = 0) -> tuple[Path, str]:
    """A Kaggle-shaped cache: 1 : 2.9 classes, 10% val, 20% test, non-negative (post-ReLU-like) features with a
    weak low-rank class signal, so the heads need real training rather than one step."""
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 3875 / 5216).astype(np.int64)
    latent = rng.normal(size=(rows, 32)) + 0.35 * y[:, None] * rng.normal(size=32)
    X = np.maximum(latent @ rng.normal(size=(32, dim)) / 6 + rng.normal(scale=0.8, size=(rows, dim)), 0)
    splits = rng.choice(["train", "val", "test"], size=rows, p=[0.7, 0.1, 0.2]).tolist()
    ids = [f"synthetic/{i:05d}.jpeg" for i in range(rows)]
    groups = [f"person{i // 3}" for i in range(rows)]
    classes = ["NORMAL", "PNEUMONIA"]
    labels = y.tolist()
    manifest = compute_samples_sha256(ids=ids, labels=labels, splits=splits, groups=groups, classes=classes)
    table = SamplesTable(ids=ids, labels=labels, splits=splits, groups=groups, classes=classes, manifest_hash=manifest,
                         attrs={"source": {"root": "synthetic", "kind": "benchmark"}})
    prep = {"input_size": 224, "resize_size": 256, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
            "interpolation": "bilinear"}
    name = "synthetic1024"
    fp = compute_fingerprint(backbone=name, weights_tag="random", weights_sha256="", preprocessing=prep,
                             manifest_hash=manifest)
    spec = FeatureSetSpec(name=name, backbone=name, weights_tag="random", weights_sha256="", preprocessing=prep,
                          dim=dim, fingerprint=fp, dtype="float16")
    with CacheWriter(path, table, [spec]) as writer:
        writer.write_batch(np.arange(rows), {name: X.astype(np.float32)}, np.ones(rows, dtype=bool))
        writer.finish(stats={name: {"device": "synthetic", "seconds": 0.0, "images_per_second": 0.0}}, skipped=[])
    return path, name


def cached_epoch_seconds(X: np.ndarray, y: np.ndarray, *, device: torch.device, repeats: int) -> float:
    """Median wall time of one epoch of one linear head over `len(X)` rows (standardise + upload included)."""
    settings = TrainSettings(epochs=1, batch_size=256)
    times = []
    for r in range(repeats + 1):  # the first run warms up CUDA / the allocator and is discarded
        with Timer(device=device) as timer:
            train_batched(X, y, configs=[TorchHeadConfig(lr=1e-3)], settings=settings, device=device, seed=r)
        if r:
            times.append(timer.seconds)
    return statistics.median(times)


def frozen_images_per_second(paths: list[Path], *, device: torch.device, batch_size: int, workers: int,
                             warmup_batches: int = 3) -> float:
    """The tutorial's fixed-feature-extractor training loop over `paths`; images/s after a short warm-up."""
    import torchvision
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])

    class Images(Dataset):
        def __len__(self) -> int:
            return len(paths)

        def __getitem__(self, i: int):
            with open(paths[i], "rb") as f:
                img = Image.open(f).convert("RGB")  # torchvision's pil_loader, as ImageFolder does
            return tf(img), int("PNEUMONIA" in str(paths[i]))

    model = torchvision.models.resnet18(weights=None)
    for p in model.parameters():
        p.requires_grad = False
    model.fc = torch.nn.Linear(model.fc.in_features, 2)
    model = model.to(device).train()  # the tutorial trains with BN in train mode: the "fixed" extractor is not fixed
    fc, model.fc = model.fc, torch.nn.Identity()
    opt = torch.optim.SGD(fc.parameters(), lr=1e-3, momentum=0.9)
    loader = DataLoader(Images(), batch_size=batch_size, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(0))
    warmup_batches = min(warmup_batches, len(loader) - 1)  # few images: time at least the last batch
    if warmup_batches < 0:
        raise SystemExit("--frozen-images found no images to time")
    seen, start = 0, None
    for i, (x, y) in enumerate(loader):
        if i == warmup_batches:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start, seen = time.perf_counter(), 0
        x, y = x.to(device), y.to(device)
        with torch.no_grad():
            feats = model(x)
        loss = torch.nn.functional.cross_entropy(fc(feats), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen / (time.perf_counter() - start)


def add_frozen_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `frozen_epochs` reads."""
    parser.add_argument("--frozen-images", type=int, default=384, help="real JPEGs timed on the frozen path")
    parser.add_argument("--frozen-batch-sizes", default="4,64", help="4 is the tutorial's")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers on the frozen path (tutorial: 4)")


def frozen_epochs(args: argparse.Namespace, *, device: torch.device, label: str):
    """Seconds of one tutorial frozen epoch over KAGGLE_ROWS images, yielded per `--frozen-batch-sizes` entry after
    printing its rate; nothing (after saying why) when the real JPEGs are absent. Reads `--frozen-images`,
    `--frozen-batch-sizes` and `--workers` from `args`."""
    folder = DATA / "kaggle_cxr_224" / "train"
    if not folder.is_dir():
        print(f"\n{label} skipped: {folder} is absent, so the frozen-backbone path cannot be timed on real JPEGs")
        return
    paths = sorted(folder.rglob("*.jpeg"))
    paths = [paths[i] for i in np.random.default_rng(0).permutation(len(paths))[: args.frozen_images]]
    print(f"\n{label} frozen-backbone tutorial path, ResNet18 @ 224, {len(paths)} real JPEGs, {args.workers} workers:")
    for batch_size in (int(b) for b in args.frozen_batch_sizes.split(",")):
        rate = frozen_images_per_second(paths, device=device, batch_size=batch_size, workers=args.workers)
        epoch = KAGGLE_ROWS / rate
        print(f"    batch {batch_size:>3}: {rate:8.1f} images/s -> one epoch of {KAGGLE_ROWS} images = {epoch:7.1f} s")
        yield epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, help="a real cache to sweep instead of the synthetic one")
    parser.add_argument("-b", "--feature-set", help="feature set in --cache (default: the first complete one)")
    parser.add_argument("--rows", type=int, default=KAGGLE_ROWS)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sweep", default="default")
    parser.add_argument("--heads", default=",".join(HEADS))
    add_frozen_arguments(parser)
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the cheap cached-epoch timing")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    device = resolve_device(args.device)
    print(f"device: {describe_device(device)}; torch {torch.__version__}; CPU threads {torch.get_num_threads()}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.cache:
            cache_path, name = args.cache, args.feature_set
        else:
            cache_path, name = synthetic_cache(tmp / "bench.h5", rows=args.rows, dim=args.dim)
        with FeatureCache(cache_path) as cache:
            name = name or next(n for n, m in cache.feature_sets.items() if m["complete"])
            t0 = time.perf_counter()
            X, valid = cache.load(name)
            load_seconds = time.perf_counter() - t0
            y = cache.labels[valid]
            X = X[valid]
            counts = {s: int(((cache.splits == s) & valid).sum()) for s in ("train", "val", "test")}
        print(f"cache: {cache_path if args.cache else 'synthetic'} '{name}' {X.shape[0]} x {X.shape[1]} "
              f"(train {counts['train']}, val {counts['val']}, test {counts['test']}); HDF5 load {load_seconds:.2f} s")

        # warm-up so CUDA context creation and cuBLAS handles are not billed to the first head
        train_batched(X[:512], y[:512], X[:64], y[:64], configs=[TorchHeadConfig(hidden=8)],
                      settings=TrainSettings(epochs=1), device=device)
        grid = get_sweep(args.sweep)
        heads = args.heads.split(",")
        config = HeadsConfig(feature_sets=[name], heads=heads, sweep=args.sweep, seeds=args.seeds, device=str(device))
        with Timer(device=device) as whole:
            records = run_heads(cache_path=cache_path, runs_dir=tmp / "runs", config=config, progress=False)
        sweep_seconds = sum(r.timing["train_seconds"] for r in records)
        print(f"\n(a) sweep '{args.sweep}': {', '.join(f'{h} {grid.size(h)}' for h in heads)} configs x {args.seeds} "
              f"seeds = {len(records)} runs")
        for head in heads:
            per = [r.timing["train_seconds"] for r in records if r.head == head]
            print(f"    {head:<7} train_seconds per seed: {', '.join(f'{s:.2f}' for s in per)}")
        print(f"    sweep (sum of train_seconds): {sweep_seconds:.2f} s; whole run_heads call "
              f"(+ selection, bootstrap CIs, records): {whole.seconds:.2f} s")
        print(summary_table(records))

        cached = cached_epoch_seconds(np.resize(X, (KAGGLE_ROWS, X.shape[1])), np.resize(y, KAGGLE_ROWS),
                                      device=device, repeats=args.repeats)
        print(f"\n(b) one cached epoch (linear head, {KAGGLE_ROWS} rows, median of {args.repeats}): {cached * 1000:.1f} ms")

    for epoch in frozen_epochs(args, device=device, label="(c)"):
        print(f"        ratio whole sweep / one frozen epoch  = {sweep_seconds / epoch:.3f} (target < 0.25); "
              f"with bootstrap and records {whole.seconds / epoch:.3f}")
        print(f"        ratio one cached epoch / one frozen epoch = {cached / epoch:.5f} ({epoch / cached:,.0f}x faster)")


if __name__ == "__main__":
    sys.exit(main())
