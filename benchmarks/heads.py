"""Stage two's speed claim on REAL features, measured side by side in one run: the whole default head sweep
(all four heads x 3 seeds) costs a fraction of ONE epoch of the tutorial-style frozen-backbone path.

Row 1, the headline (real features): `headstart heads CACHE -o RUNS --seeds 3` (every head, default sweep), timed
    as a command from process start to exit, on issue 13's real cache: the 5,216 Kaggle train JPEGs of
    ../shared/data/kaggle_cxr_224 through DenseNet121 (random weights, 64 px), 5,216 x 1,024 float16. CACHE is
    --cache, else ../bench/c.h5 when present, else it is built here with the same `headstart extract` command
    (about a minute). The records give each head's `train_seconds` and the quality table: seed 0's val AUROC of
    the selected configuration and its test AUROC with the 95% interval, against BEFORE (the same cache before
    issue 13's changes). Quality holds when every val AUROC is within 0.005 of BEFORE and every test AUROC lies
    inside BEFORE's interval.
    Row 1 runs at the default `--precision auto` (bf16 autocast for the torch heads' training steps on a device
    with native bf16, fp32 elsewhere; the records say which ran); `--also-precision fp32` adds the same command at
    fp32 as a row of its own, timed in the same run.
Row 2 (synthetic, --synthetic-row): the same command on a synthetic 5,216 x 1,024 float16 cache.
(b) one cached epoch: one epoch of a linear head over 5,216 cached rows on a device-resident tensor.
(c) one frozen epoch, as the PyTorch transfer-learning tutorial's "ConvNet as fixed feature extractor" runs
    it: ImageFolder-style PIL decode of every JPEG, Resize(256)/CenterCrop(224)/ToTensor/Normalize, NCHW
    fp32, ResNet18 (random weights: speed does not depend on weight values) left in train mode so BatchNorm
    runs in batch-statistics mode, torch.no_grad on the backbone only, then fc forward, backward and SGD step.
    Throughput is measured on a few hundred real JPEGs from ../shared/data/kaggle_cxr_224 and scaled to 5,216
    images, at the tutorial's batch size 4 and at 64.

Prints the ratios (target: sweep / one frozen epoch <= 0.15) and the quality table; asserts nothing.

    .venv/bin/python benchmarks/heads.py [--cache CACHE.h5] [--seeds 3] [--sweep default] [--frozen-images 384]
                                         [--sweep-repeats 3] [--synthetic-row | --no-synthetic-row] [--device auto]
                                         [--also-precision fp32]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from headstart.cache import CacheWriter, FeatureCache, FeatureSetSpec, SamplesTable, compute_fingerprint, compute_samples_sha256
from headstart.device import resolve_device
from headstart.evaluation.records import read_records
from headstart.evaluation.timing import Timer, describe_device
from headstart.heads.batched import TorchHeadConfig, TrainSettings, train_batched
from headstart.heads.summary import summary_table
from headstart.heads.sweep import HEADS, get_sweep

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
REAL_CACHE = REPO.parent / "bench" / "c.h5"  # issue 13's cache, when a previous run or the check left it
KAGGLE_ROWS = 5216  # images in the Kaggle pneumonia train split: one epoch of the tutorial path
# issue 13's real cache: `headstart extract DATA/kaggle_cxr_224/train -o c.h5` with these options
EXTRACT_ARGS = ("-b", "densenet121", "--weights", "random", "--image-size", "64", "--batch-size", "128")
# Seed 0 on that cache before issue 13's sweep changes (commit 9b7230d): val AUROC of the selected configuration,
# test AUROC and its 95% bootstrap interval, and each head timed as its own `headstart heads --head H --seeds 3`
# command on an idle machine (issue 13). The quality check compares against these.
BEFORE = {
    "logreg": {"val": 0.9974, "test": 0.9894, "test_ci": (0.9795, 0.9955), "command_seconds": 11.5},
    "linear": {"val": 0.9950, "test": 0.9846, "test_ci": (0.9746, 0.9917), "command_seconds": 8.3},
    "mlp": {"val": 0.9964, "test": 0.9881, "test_ci": (0.9789, 0.9943), "command_seconds": 61.0},
    "knn": {"val": 0.9749, "test": 0.9537, "test_ci": (0.9385, 0.9666), "command_seconds": 5.9},
}
VAL_TOLERANCE = 0.005  # issue 13: every head's selected val AUROC within this of BEFORE


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


def real_cache(path: Path | None, tmp: Path) -> Path:
    """--cache, else ../bench/c.h5, else issue 13's cache built now from the real Kaggle train JPEGs."""
    if path is not None:
        return path
    if REAL_CACHE.is_file():
        return REAL_CACHE
    folder = DATA / "kaggle_cxr_224" / "train"
    if not folder.is_dir():
        raise SystemExit(f"{folder} is absent and no --cache was given: the headline row needs real features")
    out = tmp / "c.h5"
    print(f"building the real cache: headstart extract {folder} -o {out} {' '.join(EXTRACT_ARGS)}", flush=True)
    subprocess.run([sys.executable, "-m", "headstart", "-q", "extract", str(folder), "-o", str(out), *EXTRACT_ARGS],
                   check=True)
    return out


def timed_command(cache: Path, runs: Path, *, seeds: int, sweep: str, heads: list[str], device: str,
                  precision: str) -> float:
    """Wall seconds of `headstart heads` as a user runs it: a fresh process, start-up and imports included."""
    cmd = [sys.executable, "-m", "headstart", "-q", "heads", str(cache), "-o", str(runs), "--seeds", str(seeds),
           "--sweep", sweep, "--device", device, "--precision", precision,
           *[a for h in heads for a in ("--head", h)]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def sweep_row(label: str, cache: Path, tmp: Path, args: argparse.Namespace, *, precision: str = "auto") -> dict:
    """Time the sweep command on `cache` and summarise its records."""
    heads = args.heads.split(",")
    times = []
    for repeat in range(args.sweep_repeats):
        runs = tmp / f"runs-{label}-{repeat}"
        times.append(timed_command(cache, runs, seeds=args.seeds, sweep=args.sweep, heads=heads, device=args.device,
                                   precision=precision))
    seconds = statistics.median(times)
    records = read_records(runs)  # the sweep is deterministic: every repeat writes the same records
    grid = get_sweep(args.sweep)
    print(f"\n(a) {label}: `headstart heads {cache.name} --seeds {args.seeds}` ({args.sweep} sweep: "
          f"{', '.join(f'{h} {grid.size(h)}' for h in heads)} configs x {args.seeds} seeds = {len(records)} runs)")
    print(f"    command wall time (process start to exit, bootstrap CIs and records included), median of "
          f"{len(times)}: {seconds:.1f} s ({', '.join(f'{t:.1f}' for t in times)})")
    ran = sorted({str(r.config["precision"]) for r in records if "precision" in r.config})
    print(f"    --precision {precision}: the torch heads' training steps ran in {', '.join(ran) or '-'}")
    for head in heads:
        per = [r.timing["train_seconds"] for r in records if r.head == head]
        print(f"    {head:<7} train_seconds per seed: {', '.join(f'{s:.2f}' for s in per)}")
    print(summary_table(records))
    return {"label": label, "seconds": seconds, "records": records}


def quality_table(records) -> None:
    """Seed 0 on the real cache against BEFORE: the issue's before/after table and its verdict."""
    print("\nquality, seed 0 (val AUROC of the selected configuration; test AUROC [95% CI]):")
    print(f"    {'head':<7} {'val before':>10} {'val after':>9} {'d val':>7}   {'test before [CI]':<26} "
          f"{'test after [CI]':<26} ok")
    for head, before in BEFORE.items():
        record = next((r for r in records if r.head == head and r.seed == 0), None)
        if record is None:
            continue
        val, test = record.metrics["val"]["auroc"], record.metrics["test"]["auroc"]
        low, high = record.metrics["test"]["auroc_ci"]
        ok = abs(val - before["val"]) <= VAL_TOLERANCE and before["test_ci"][0] <= test <= before["test_ci"][1]
        print(f"    {head:<7} {before['val']:>10.4f} {val:>9.4f} {val - before['val']:>+7.4f}   "
              f"{before['test']:.4f} [{before['test_ci'][0]:.4f}, {before['test_ci'][1]:.4f}]   "
              f"{test:.4f} [{low:.4f}, {high:.4f}]   {'yes' if ok else 'NO'}")
    before = ", ".join(f"{h} {b['command_seconds']} s" for h, b in BEFORE.items())
    print(f"    before, each head as its own command (issue 13, idle machine): {before}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, help="the real cache (default: ../bench/c.h5, else built here)")
    parser.add_argument("--synthetic-row", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the sweep on a synthetic cache of the same shape (the second row)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sweep", default="default")
    parser.add_argument("--heads", default=",".join(HEADS))
    add_frozen_arguments(parser)
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the cheap cached-epoch timing")
    parser.add_argument("--sweep-repeats", type=int, default=3, help="runs of each sweep command; the median counts")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--also-precision", choices=("fp32", "bf16"),
                        help="also time the real sweep at this --precision, side by side with the default (auto)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    device = resolve_device(args.device)
    print(f"device: {describe_device(device)}; torch {torch.__version__}; CPU threads {torch.get_num_threads()}; "
          f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = real_cache(args.cache, tmp)
        with FeatureCache(cache) as fc:
            name = next(n for n, m in fc.feature_sets.items() if m["complete"])
            X, valid = fc.load(name)
            X, y = X[valid], fc.labels[valid]
        print(f"real cache: {cache} '{name}' {X.shape[0]} x {X.shape[1]}")
        rows = [sweep_row("real", cache, tmp, args)]
        quality_table(rows[0]["records"])
        if args.also_precision:
            rows.append(sweep_row(f"real {args.also_precision}", cache, tmp, args, precision=args.also_precision))
            quality_table(rows[-1]["records"])
        if args.synthetic_row:
            synthetic, _ = synthetic_cache(tmp / "synthetic.h5", rows=KAGGLE_ROWS, dim=X.shape[1])
            rows.append(sweep_row("synthetic", synthetic, tmp, args))
        cached = cached_epoch_seconds(np.resize(X, (KAGGLE_ROWS, X.shape[1])), np.resize(y, KAGGLE_ROWS),
                                      device=device, repeats=args.repeats)
        print(f"\n(b) one cached epoch (linear head, {KAGGLE_ROWS} rows, median of {args.repeats}): {cached * 1000:.1f} ms")

    for epoch in frozen_epochs(args, device=device, label="(c)"):
        for row in rows:
            print(f"        {row['label']:<10} sweep {row['seconds']:6.1f} s / one frozen epoch = "
                  f"{row['seconds'] / epoch:.3f} (target <= 0.15)")
        print(f"        one cached epoch / one frozen epoch = {cached / epoch:.5f} ({epoch / cached:,.0f}x faster)")
    print(f"\nload average at the end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(json.dumps({"sweep_seconds": {r["label"]: round(r["seconds"], 2) for r in rows}}))


if __name__ == "__main__":
    from result import run  # benchmarks/result.py: --json PATH writes the output with command, date, machine, load

    sys.exit(run(main))
