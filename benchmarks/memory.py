"""Peak memory (RSS) of `headstart heads` on a 100,000 x 1,024 float16 cache and of `headstart extract` on the
5,216 real Kaggle train images with two backbones, each against the same command on a tiny input, so the
difference is what the data costs, in copies of the feature matrix.

- heads: a synthetic cache written by the project's cache writer (benchmarks/synthetic.py), 70/10/20 splits,
  `--sweep quick`, one process per head (`--head logreg`, `linear`, `mlp`, `knn`) so each head's peak is its
  own; the baseline is the same command on a 1,000 x 1,024 cache. One copy of the feature matrix is
  100,000 x 1,024 float32 = 390.6 MiB (the float16 file holds half of that).
- extract: `headstart extract ../shared/data/kaggle_cxr_224/train -b resnet18 -b densenet121 --weights random
  --image-size 64` (defaults otherwise); the baseline is the same command on 16 of the images. One copy of the
  feature matrix is 5,216 x (512 + 1,024) float32 = 30.6 MiB.

The peak is `ru_maxrss` of the command's process (`os.wait4`), which Linux reports as the largest of that
process and its finished children (the decode worker); pages shared with the parent count once per process.
Target: neither command holds more than two copies of the feature matrix.

    .venv/bin/python benchmarks/memory.py [--rows 100000] [--dim 1024] [--heads logreg,linear,mlp,knn]

`--streaming N_BIG,N_SMALL` instead measures the streaming cache writer at scale (issue 22): `extract -b
densenet121 --weights random --image-size 32` on N_BIG generated 32-px PNGs against N_SMALL of them (target: at
most 80 MB apart), and the writer alone streaming N x 1,024 float16 rows in batches of 64 (`--backbone` swaps in
a cheaper model when the machine is too slow for densenet121 on N_BIG images).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synthetic import write_cache

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HEADSTART_DATA", REPO.parent / "shared" / "data"))
MIB = 2**20


def peak_rss(args: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of one `python -m headstart ...` process."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "headstart", "-q", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"headstart {' '.join(args[:4])} ... failed:\n{stderr.decode()[-2000:]}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start  # Linux reports KiB


def report(label: str, big: tuple[float, float], small: tuple[float, float], copy_mib: float) -> None:
    extra = big[0] - small[0]
    print(f"{label:34s} {big[0]:8.0f} MiB peak ({big[1]:6.1f} s)   baseline {small[0]:6.0f} MiB   "
          f"data: {extra:7.0f} MiB = {extra / copy_mib:4.2f} copies")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--heads", default="logreg,linear,mlp,knn", help="comma-separated; one process each")
    ap.add_argument("--no-extract", action="store_true")
    ap.add_argument("--streaming", default=None, help="N_BIG,N_SMALL: the streaming writer's memory at scale")
    ap.add_argument("--backbone", default="densenet121")
    args = ap.parse_args()
    if args.streaming:
        return streaming(*(int(n) for n in args.streaming.split(",")), backbone=args.backbone,
                         extract=not args.no_extract)
    print(f"load average {os.getloadavg()[0]:.1f} at start, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        t0 = time.perf_counter()
        big = write_cache(tmp / "big.h5", rows=args.rows, dim=args.dim)
        small = write_cache(tmp / "small.h5", rows=1000, dim=args.dim)
        copy_mib = args.rows * args.dim * 4 / MIB
        print(f"caches written in {time.perf_counter() - t0:.0f} s; one float32 copy of the {args.rows:,} x "
              f"{args.dim:,} matrix = {copy_mib:.1f} MiB")
        for head in args.heads.split(","):
            opts = ["--head", head, "--sweep", "quick", "--n-boot", "200"]
            report(f"heads --head {head} --sweep quick", peak_rss(["heads", str(big), "-o", str(tmp / "r"), *opts]),
                   peak_rss(["heads", str(small), "-o", str(tmp / "s"), *opts]), copy_mib)
        if args.no_extract:
            return
        train = DATA / "kaggle_cxr_224" / "train"
        if not train.is_dir():
            sys.exit(f"{train} is absent; the extract half needs the real JPEGs in ../shared/data")
        few = tmp / "few"
        for i, src in enumerate(sorted(train.rglob("*.jpeg"))[::326]):  # 16 images from both classes
            (few / src.parent.name).mkdir(parents=True, exist_ok=True)
            os.symlink(src, few / src.parent.name / f"{i:02d}.jpeg")
        opts = ["-b", "resnet18", "-b", "densenet121", "--weights", "random", "--image-size", "64"]
        n = len(list(train.rglob("*.jpeg")))
        report("extract resnet18+densenet121 @64", peak_rss(["extract", str(train), "-o", str(tmp / "x.h5"), *opts]),
               peak_rss(["extract", str(few), "-o", str(tmp / "y.h5"), "--val-fraction", "0.25",
                         "--test-fraction", "0.25", *opts]), n * (512 + 1024) * 4 / MIB)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


WRITER = """
import sys, numpy as np
from headstart.cache import CacheWriter, FeatureSetSpec, SamplesTable
n, path = int(sys.argv[1]), sys.argv[2]
ids = [f"{i:07d}.png" for i in range(n)]
t = SamplesTable(ids=ids, labels=[i % 2 for i in range(n)], splits=["train"] * n, groups=[""] * n, classes=["a", "b"],
                 manifest_hash="m")
from headstart.cache.fingerprint import compute_fingerprint
fp = compute_fingerprint(backbone="b", weights_tag="random", weights_sha256="0", preprocessing={}, manifest_hash="m")
spec = FeatureSetSpec(name="b", backbone="b", weights_tag="random", weights_sha256="0", preprocessing={}, dim=1024,
                      dtype="float16", fingerprint=fp)
with CacheWriter(path, t, [spec]) as w:
    for s in range(0, n, 64):
        rows = np.arange(s, min(n, s + 64))
        w.write_batch(rows, {"b": np.random.default_rng(s).standard_normal((len(rows), 1024), np.float32)},
                      np.ones(len(rows), bool))
    w.finish(stats={}, skipped=[])
"""


def streaming(n_big: int, n_small: int, *, backbone: str, extract: bool) -> None:
    """Peak RSS of the writer alone and of a whole extraction, at N_BIG against N_SMALL images."""
    import numpy as np
    from PIL import Image

    print(f"load average {os.getloadavg()[0]:.1f} at start, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        peaks = {}
        for n in (n_big, n_small):
            start = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-c", WRITER, str(n), str(tmp / f"w{n}.h5")],
                                    env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE)
            stderr = proc.stderr.read()
            _, status, usage = os.wait4(proc.pid, 0)
            if os.waitstatus_to_exitcode(status):
                raise SystemExit(stderr.decode()[-2000:])
            peaks[n] = usage.ru_maxrss / 1024
            print(f"writer alone, {n:,} x 1,024 float16: {peaks[n]:.0f} MiB peak ({time.perf_counter() - start:.0f} s)")
        print(f"writer alone: {peaks[n_big] - peaks[n_small]:+.0f} MiB from {n_small:,} to {n_big:,} rows")
        if not extract:
            return
        rng = np.random.default_rng(0)
        for n in (n_small, n_big):  # the small set is the first n_small images of the big one
            folder = tmp / "png"
            for i in range(len(list(folder.rglob("*.png"))) if folder.exists() else 0, n):
                split = ("train", "train", "train", "val", "test")[i % 5]
                out = folder / split / ("a", "b")[i % 2]
                out.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(out / f"{i:07d}.png")
            peaks[n] = peak_rss(["extract", str(folder), "-o", str(tmp / f"x{n}.h5"), "-b", backbone, "--weights",
                                 "random", "--image-size", "32"])
            print(f"extract {backbone} on {n:,} 32-px PNGs: {peaks[n][0]:.0f} MiB peak ({peaks[n][1]:.0f} s)")
        print(f"extract: {peaks[n_big][0] - peaks[n_small][0]:+.0f} MiB from {n_small:,} to {n_big:,} images "
              f"(target: at most +80 MB)")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    from result import run  # benchmarks/result.py: --json PATH writes the output with command, date, machine, load

    run(main)
