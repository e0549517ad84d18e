"""`headstart audit` speed and memory on synthetic caches, and the cost of recording metadata while decoding.

(a) a 5,216 x 1,024 float16 cache (the Kaggle train set's size with a densenet121-sized feature): target < 30 s;
(b) a 100,000 x 768 float16 cache: target peak RSS < 4 GB (the near-duplicate search is blockwise);
(c) decode_image vs decode_with_meta on real JPEGs from $HEADSTART_DATA (default ../shared/data), if present;
(d) the metadata-only baseline on the unmodified shared Kaggle 224 px set (its train folder, val and test carved
    as `extract` carves them), the README's honest figure.

Each audit runs as `python -m headstart audit CACHE --json` in a child process, so its wall time and peak RSS
(from os.wait4) are the command's own, not this script's cache building. The caches have 70/10/20 splits, a
weak class signal in 16 feature dimensions, metadata with random hashes and 50 planted near-duplicate rows.

    .venv/bin/python benchmarks/audit.py [--sizes 5216x1024,100000x768] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from headstart.cache import CacheWriter, FeatureSetSpec, SamplesTable, compute_fingerprint, compute_samples_sha256
from headstart.cache.publish import write_meta
from headstart.data.imagemeta import ImageMeta, meta_columns

DATA = Path(os.environ.get("HEADSTART_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
PREPROCESSING = {"input_size": 224, "resize_size": 256, "mean": [0.5] * 3, "std": [0.25] * 3,
                 "interpolation": "bilinear"}
N_COPIES = 50
BATCH = 8192


def make_cache(path: Path, n: int, dim: int, *, seed: int = 0) -> Path:
    """A complete cache of `n` rows x `dim` float16 features with metadata, written through CacheWriter."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 2.9 / 3.9).astype(int)
    splits = rng.choice(["train", "val", "test"], size=n, p=[0.7, 0.1, 0.2])
    ids = [f"{s}/{i:06d}.jpeg" for i, s in enumerate(splits)]
    groups = [f"p{i // 3:06d}" for i in range(n)]
    classes = ["NORMAL", "PNEUMONIA"]
    manifest = compute_samples_sha256(ids=ids, labels=labels.tolist(), splits=splits.tolist(), groups=groups,
                                      classes=classes)
    table = SamplesTable(ids=ids, labels=labels.tolist(), splits=splits.tolist(), groups=groups, classes=classes,
                         manifest_hash=manifest, attrs={"source": {"kind": "split-folder"}})
    fp = compute_fingerprint(backbone="bench", weights_tag="random", weights_sha256="", preprocessing=PREPROCESSING,
                             manifest_hash=manifest)
    spec = FeatureSetSpec(name="bench", backbone="bench", weights_tag="random", weights_sha256="",
                          preprocessing=PREPROCESSING, dim=dim, fingerprint=fp, dtype="float16")
    train, test = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "test")
    copies = dict(zip(rng.choice(test, N_COPIES, replace=False).tolist(), rng.choice(train, N_COPIES).tolist()))
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x[:, :16] += 0.4 * labels[:, None]  # a weak class signal
    for dst, src in copies.items():
        x[dst] = x[src] + 0.01 * rng.standard_normal(dim, dtype=np.float32)
    with CacheWriter(path, table, [spec]) as writer:
        for start in range(0, n, BATCH):
            rows = np.arange(start, min(n, start + BATCH))
            writer.write_batch(rows, {"bench": x[rows]}, np.ones(len(rows), dtype=bool))
        writer.finish(stats={"bench": {"device": "cpu", "seconds": 0.0, "images_per_second": 0.0}}, skipped=[])
    hashes = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64)
    for dst, src in copies.items():
        hashes[dst] = hashes[src] ^ np.uint64(1)
    metas = [ImageMeta(width=int(w), height=int(w), mode="L", bit_depth=8, file_size=int(w) * 90, format="JPEG",
                       phash=int(h)) for w, h in zip(rng.integers(900, 2500, n), hashes)]
    with h5py.File(path, "a") as f:
        write_meta(f, meta_columns(metas))
    return path


def run_audit(cache: Path) -> dict:
    """Run the audit CLI in a child; returns seconds, peak RSS (GiB) and the JSON document."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    out = tempfile.TemporaryFile()
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "headstart", "-q", "audit", str(cache), "--json"], stdout=out,
                             stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    out.seek(0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"audit of {cache} failed with status {status}")
    return {"seconds": seconds, "peak_rss_gib": usage.ru_maxrss / 2**20, "doc": json.loads(out.read())}


def decode_overhead(n: int = 200) -> str:
    from headstart.data.decode import decode_image, decode_with_meta

    lines = []
    for folder, min_size in (("kaggle_cxr_224", None), ("kaggle_cxr_fullsize_sample", 224)):
        files = sorted((DATA / folder).rglob("*.jpeg"))[:n]
        if not files:
            continue
        timings = {}
        for name, fn in (("decode_image", decode_image), ("decode_with_meta", decode_with_meta)):
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                for f in files:
                    fn(f, min_size=min_size)
                best = min(best, time.perf_counter() - start)
            timings[name] = best / len(files) * 1000
        lines.append(f"{folder} ({len(files)} files, min_size {min_size}): decode_image "
                     f"{timings['decode_image']:.2f} ms, decode_with_meta {timings['decode_with_meta']:.2f} ms "
                     f"(+{timings['decode_with_meta'] - timings['decode_image']:.2f} ms per image)")
    return "\n".join(lines) or f"no JPEGs under {DATA}: decode overhead not measured"


def real_baseline() -> str:
    """The metadata-only baseline on the unmodified shared set (no features needed: metadata and splits only)."""
    from headstart.cache.header import MetaTable
    from headstart.data.dataset import build_dataset
    from headstart.data.types import SplitConfig
    from headstart.studies.audit.config import AuditConfig
    from headstart.studies.audit.inputs import AuditInputs
    from headstart.studies.audit.metadata import metadata_baseline

    root = DATA / "kaggle_cxr_224"
    if not root.is_dir():
        return f"no {root}: real-data baseline not measured"
    dataset = build_dataset(root, split_config=SplitConfig(), find_duplicates=False)
    metas = [dataset.source.load_with_meta(s)[1] for s in dataset.samples]
    as_array = lambda values: np.array(values, dtype=object)  # noqa: E731
    inputs = AuditInputs(path=str(root), ids=as_array([s.id for s in dataset.samples]),
                         labels=np.array([s.label for s in dataset.samples]),
                         splits=as_array([s.split for s in dataset.samples]),
                         groups=as_array([s.group for s in dataset.samples]), classes=list(dataset.classes),
                         root_attrs={}, meta=MetaTable(columns=meta_columns(metas), present=True))
    result = metadata_baseline(inputs, AuditConfig())
    return f"metadata-only baseline on {root} ({len(metas)} images): {result.message}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5216x1024,100000x768")
    parser.add_argument("--keep", default=None, help="build the caches in DIR and keep them")
    args = parser.parse_args()
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="audit-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    for size in args.sizes.split(","):
        n, dim = (int(v) for v in size.lower().split("x"))
        cache = folder / f"bench_{n}x{dim}.h5"
        if not cache.exists():
            start = time.perf_counter()
            make_cache(cache, n, dim)
            print(f"built {cache.name} in {time.perf_counter() - start:.1f} s", flush=True)
        result = run_audit(cache)
        doc = result["doc"]
        found = len(doc["near_duplicates"])
        per_check = ", ".join(f"{k} {doc[k if k != 'near_duplicates' else 'near_duplicates_summary']['seconds']:.1f}"
                              for k in doc["checks"])
        print(f"{n} x {dim}: {result['seconds']:.1f} s wall, peak RSS {result['peak_rss_gib']:.2f} GiB, "
              f"{found} near-duplicate pairs (planted {N_COPIES}); per check (s): {per_check}", flush=True)
    print(decode_overhead())
    print(real_baseline())
    if not args.keep:
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()


if __name__ == "__main__":
    from result import run  # benchmarks/result.py: --json PATH writes the output with command, date, machine, load

    run(main)
