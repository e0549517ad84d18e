"""Extraction throughput, three ways, measured side by side in one run (medians of repeats).

(a) forward-only: the backbone on pre-made tensors (eval, inference_mode, channels_last) - the ceiling;
(b) headstart end to end on real JPEGs (`run_extract`: decode workers, crop, normalise, forward, staging and
    the HDF5 write), with the fixed start-up cost subtracted: throughput is the marginal rate between a small
    and a large run, (n_large - n_small) / (t_large - t_small);
(c) the tutorial loop: ImageFolder-style full PIL decode, torchvision transforms, NCHW fp32, no
    inference_mode (torch.no_grad), same batch size and workers.

Targets (ResNet18 at 224 on the 2-core CI machine): b/a >= 0.85 on 224-px JPEGs, >= 0.75 on full-size JPEGs,
b/c >= 1.2. Random weights: speed does not depend on the weight values, and this machine cannot download them.
On CUDA (`--device cuda`), (a) and (b) use headstart's `--precision auto` (fp16 autocast) and every timing
synchronises the device; (c) stays the tutorial's fp32. The data folder is $HEADSTART_DATA, default
../shared/data.

`--decode device` runs (b) with JPEGs decoded by torchvision on the device (nvJPEG on CUDA) instead of PIL.

    .venv/bin/python benchmarks/extract.py [--backbone resnet18] [--n 192] [--repeats 3] [--device cpu|cuda]
                                           [--decode cpu|device]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from headstart.data.types import SplitConfig
from headstart.device import autocast, autocast_dtype, resolve_device
from headstart.extract.config import ExtractConfig
from headstart.extract.runner import run_extract

DATA = Path(os.environ.get("HEADSTART_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def jpeg_paths(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg"))


def make_manifest(paths: list[Path], n: int, root: Path) -> Path:
    """A CSV manifest of n images (cycling through `paths` via symlinks when there are fewer files)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["path,label"]
    for i in range(n):
        src = paths[i % len(paths)]
        link = root / f"img{i:05d}{src.suffix}"
        if not link.exists():
            os.symlink(src, link)
        # Labels only need two classes (speed does not depend on them); every row is extracted whatever its split.
        lines.append(f"{link.name},{'AB'[i % 2]}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_only(model: torch.nn.Module, *, n: int, batch_size: int, device: torch.device) -> float:
    x = torch.randn(batch_size, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(device, autocast_dtype("auto", device)):
        for _ in range(3 if device.type == "cuda" else 1):  # warm-up (cuDNN autotuning on CUDA)
            model(x)
        _sync(device)
        start = time.perf_counter()
        done = 0
        while done < n:
            model(x)
            done += batch_size
        _sync(device)
    return done / (time.perf_counter() - start)


def headstart_rate(manifest_small: Path, manifest_large: Path, n_small: int, n_large: int, *, backbone: str,
                   batch_size: int, workers: int | None, device: str, decode: str, tmp: Path) -> float:
    times = []
    for manifest in (manifest_small, manifest_large):
        out = tmp / f"cache-{time.monotonic_ns()}.h5"
        cfg = ExtractConfig(backbones=[backbone], weights="random", batch_size=batch_size, device=device,
                            workers=workers, decode=decode, split=SplitConfig())
        start = time.perf_counter()
        run_extract(data=str(manifest), output=str(out), config=cfg)
        times.append(time.perf_counter() - start)
        out.unlink()
    return (n_large - n_small) / (times[1] - times[0])


class TutorialImages(Dataset):
    """What the PyTorch transfer-learning tutorial does per image, every epoch."""

    def __init__(self, paths: list[Path], n: int):
        self.paths = [paths[i % len(paths)] for i in range(n)]
        self.tf = transforms.Compose([
            transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return self.tf(Image.open(self.paths[i]).convert("RGB")), 0


def tutorial_rate(paths: list[Path], *, n: int, backbone: str, batch_size: int, workers: int,
                  device: torch.device) -> float:
    model = torchvision.models.get_model(backbone).eval().to(device)
    loader = DataLoader(TutorialImages(paths, n), batch_size=batch_size, num_workers=workers)
    start = time.perf_counter()
    with torch.no_grad():
        for x, _ in loader:
            model(x.to(device))
    _sync(device)
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--n", type=int, default=192, help="images in the large run (the small run is n/3)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None,
                    help="decode workers (default: 1 on CPU; on CUDA headstart sizes them, the tutorial uses 8)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--decode", default="cpu", choices=["cpu", "device"], help="headstart's --decode for (b)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the cycled symlinks are deliberate duplicates
    if not DATA.is_dir():
        sys.exit(f"{DATA} is absent; this benchmark needs the real JPEGs in ../shared/data")
    sets = {
        "224px": jpeg_paths(DATA / "kaggle_cxr_224"),
        "fullsize": jpeg_paths(DATA / "kaggle_cxr_fullsize_sample"),
    }
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as run_extract does: fixed input sizes
    workers = args.workers if args.workers is not None else (1 if device.type == "cpu" else None)
    tutorial_workers = workers if workers is not None else 8
    model = torchvision.models.get_model(args.backbone).eval().to(device, memory_format=torch.channels_last)
    n_small = max(args.batch_size, args.n // 3)
    where = str(device) if device.type == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})"
    print(f"{args.backbone}, batch {args.batch_size}, {workers if workers is not None else 'auto'} worker(s), "
          f"{where}, --decode {args.decode}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores; "
          f"medians of {args.repeats}")
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        manifests = {
            name: (make_manifest(paths, n_small, tmp / f"{name}-small"), make_manifest(paths, args.n, tmp / f"{name}-large"))
            for name, paths in sets.items()
        }
        for _ in range(args.repeats):  # interleave the methods so machine noise hits them alike
            forward = forward_only(model, n=args.n, batch_size=args.batch_size, device=device)
            results.setdefault("a forward-only", []).append(forward)
            for name, paths in sets.items():
                small, large = manifests[name]
                results.setdefault(f"b headstart {name}", []).append(headstart_rate(
                    small, large, n_small, args.n, backbone=args.backbone, batch_size=args.batch_size,
                    workers=workers, device=args.device, decode=args.decode, tmp=tmp))
                results.setdefault(f"c tutorial {name}", []).append(tutorial_rate(
                    paths, n=args.n, backbone=args.backbone, batch_size=args.batch_size, workers=tutorial_workers,
                    device=device))
    med = {k: statistics.median(v) for k, v in results.items()}
    for k, v in results.items():
        print(f"{k:24s} {med[k]:7.1f} images/s   (runs: {', '.join(f'{x:.1f}' for x in v)})")
    a = med["a forward-only"]
    for name in sets:
        b, c = med[f"b headstart {name}"], med[f"c tutorial {name}"]
        print(f"{name:9s} b/a = {b / a:.2f}   b/c = {b / c:.2f}")


if __name__ == "__main__":
    main()
