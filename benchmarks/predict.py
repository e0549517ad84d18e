"""`predict` against `extract` on the same real images, and the cold-process time to a first prediction.

(a) throughput: `run_extract` and `run_predict` (a cached logistic-regression head on the same backbone) over the
    same N real JPEGs, interleaved, `--repeats` times each; each rate is the command's own loop time (decode,
    forward, and the cache write or the head), model building excluded in both. Target: predict >= 0.9 x extract,
    since the head costs next to nothing.
(b) start-up: a fresh `python -m headstart predict` on a folder of one image, for the run folder (the backbone is
    rebuilt and its weights checked) and for the exported ONNX model; wall time of the whole process, median of
    `--repeats`, next to a process that only imports torch and torchvision.

Random weights (speed does not depend on them; this machine cannot download any). The images are the first N
of each class of $HEADSTART_DATA/kaggle_cxr_224/train (default ../shared/data), linked into a class-folder layout.

    .venv/bin/python benchmarks/predict.py [--n 320] [--repeats 3] [--backbone resnet18] [--device cpu]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from headstart.api import run_export, run_extract, run_heads, run_predict

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HEADSTART_DATA", REPO.parent / "shared" / "data"))


def link_images(root: Path, n: int) -> Path:
    """A class-folder copy (symlinks) of n real 224-px JPEGs, half from each class."""
    source = DATA / "kaggle_cxr_224" / "train"
    if not source.is_dir():
        sys.exit(f"{source} is absent; set HEADSTART_DATA to the folder holding kaggle_cxr_224")
    for name in ("NORMAL", "PNEUMONIA"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for path in sorted((source / name).glob("*.jpeg"))[: n // 2]:
            (root / name / path.name).symlink_to(path)
    return root


def cold_start(run: str | Path, image_dir: Path, out: Path, *, device: str) -> float:
    """Wall seconds of a fresh `python -m headstart predict RUN one-image-folder` process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "headstart", "-q", "predict", str(run), str(image_dir), "-o", str(out),
                    "--workers", "0", "--device", device], check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def cold_import() -> float:
    """Wall seconds of a fresh process that only imports torch and torchvision: the floor under (b)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, torchvision"], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=320, help="real images (half per class)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = link_images(tmp / "data", args.n)
        common = dict(batch_size=args.batch_size, device=args.device)
        cache = tmp / "c.h5"
        run_extract(data, cache, backbones=[args.backbone], weights="random", **common)
        run_heads(cache, tmp / "runs", heads=["logreg"], sweep="quick", n_boot=10, progress=False)
        run = tmp / "runs" / f"cached-head_{args.backbone}_logreg_s0"
        extract_rates, predict_rates = [], []
        for r in range(args.repeats):  # interleaved, so a load change on the shared machine hits both alike
            extracted = run_extract(data, tmp / f"c{r}.h5", backbones=[args.backbone], weights="random", **common)
            extract_rates.append(extracted.images_per_second)
            predicted = run_predict(run, data, tmp / "p.csv", n_boot=10, progress=False, **common)
            predict_rates.append(predicted.images_per_second)
            print(f"repeat {r + 1}: extract {extract_rates[-1]:.1f} img/s, predict {predict_rates[-1]:.1f} img/s",
                  flush=True)
        one = tmp / "one"
        one.mkdir()
        (one / "x.jpeg").symlink_to(next((data / "NORMAL").iterdir()).resolve())
        run_export(run, tmp / "model.onnx")
        run_cold = [cold_start(run, one, tmp / "o.csv", device=args.device) for _ in range(args.repeats)]
        onnx_cold = [cold_start(tmp / "model.onnx", one, tmp / "o.csv", device=args.device)
                     for _ in range(args.repeats)]
        floor = [cold_import() for _ in range(args.repeats)]
    e, p = statistics.median(extract_rates), statistics.median(predict_rates)
    print(f"\n{args.backbone} at 224 px, {args.n} real JPEGs, batch {args.batch_size}, {args.device}, "
          f"{torch.get_num_threads()} torch threads, random weights; medians of {args.repeats}")
    print(f"extract {e:.1f} img/s | predict {p:.1f} img/s | predict / extract {p / e:.2f} (target >= 0.9)")
    print(f"cold start to first prediction: run folder {statistics.median(run_cold):.1f} s, "
          f"ONNX model {statistics.median(onnx_cold):.1f} s (whole `python -m headstart predict` process; "
          f"`python -c 'import torch, torchvision'` alone: {statistics.median(floor):.1f} s)")


if __name__ == "__main__":
    from result import run  # benchmarks/result.py: --json PATH writes the output with command, date, machine, load

    run(main)
