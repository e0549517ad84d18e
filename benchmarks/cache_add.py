"""What adding a feature set to an existing cache costs, and proof that the existing set's bytes stay where they are.

Builds a cache of N rows holding one set `old` (N x D_old float16), then adds a 1,024-d set `new` with the
streaming writer (batches of --batch rows, features generated on the fly, so the benchmark itself holds one batch).
It is run twice, with D_old = 1,024 and with D_old = 16: the time to add `new` must not depend on D_old (within
20 %), and the raw bytes of `old` (its chunks, at their file offsets) must be the same before and after the add.

    PYTHONPATH=. python benchmarks/cache_add.py --rows 200000 --repeats 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from headstart.cache import CacheWriter, FeatureSetSpec, SamplesTable, compute_fingerprint, compute_samples_sha256


def _table(n: int) -> SamplesTable:
    ids = [f"img/{i:07d}.png" for i in range(n)]
    labels = [i % 2 for i in range(n)]
    splits = ["train" if i % 10 < 8 else ("val" if i % 10 == 8 else "test") for i in range(n)]
    groups = [""] * n
    digest = compute_samples_sha256(ids=ids, labels=labels, splits=splits, groups=groups, classes=["a", "b"])
    return SamplesTable(ids=ids, labels=labels, splits=splits, groups=groups, classes=["a", "b"],
                        manifest_hash=digest)


def _spec(table: SamplesTable, name: str, dim: int) -> FeatureSetSpec:
    prep = {"bench": name}
    return FeatureSetSpec(name=name, backbone=name, weights_tag="random", weights_sha256="0" * 64, preprocessing=prep,
                          dim=dim, dtype="float16",
                          fingerprint=compute_fingerprint(backbone=name, weights_tag="random", weights_sha256="0" * 64,
                                                          preprocessing=prep, manifest_hash=table.manifest_hash))


def _write(path: Path, table: SamplesTable, specs: list[FeatureSetSpec], batch: int) -> float:
    start = time.perf_counter()
    with CacheWriter(path, table, specs) as writer:
        todo = [s for s in specs if s.name in writer.todo]
        for first in range(0, len(table), batch):
            rows = np.arange(first, min(len(table), first + batch))
            rng = np.random.default_rng(first)
            feats = {s.name: rng.standard_normal((len(rows), s.dim), dtype=np.float32) for s in todo}
            writer.write_batch(rows, feats, np.ones(len(rows), bool))
        writer.finish(stats={s.name: {"seconds": 1.0} for s in todo}, skipped=[])
    return time.perf_counter() - start


def _fingerprint_bytes(path: Path, name: str) -> dict:
    """Where the set's chunks are and the sha256 of their raw bytes, read straight from the file holding them."""
    with h5py.File(path, "r") as f:
        ds = f[f"features/{name}"]
        holder = path.parent / ds.file.filename if not Path(ds.file.filename).is_absolute() else Path(ds.file.filename)
        chunks = [ds.id.get_chunk_info(i) for i in range(ds.id.get_num_chunks())]
    digest = hashlib.sha256()
    with open(holder, "rb") as raw:
        for c in chunks:
            raw.seek(c.byte_offset)
            digest.update(raw.read(c.size))
    return {"file": str(holder), "offsets": [c.byte_offset for c in chunks], "sha256": digest.hexdigest(),
            "mtime_ns": holder.stat().st_mtime_ns if holder != path else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to build the caches (default: a temporary folder)")
    args = parser.parse_args()
    table = _table(args.rows)
    new = _spec(table, "new", 1024)
    report: dict = {"rows": args.rows, "batch": args.batch, "add_seconds": {}, "old_bytes_unchanged": {}}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for d_old in (1024, 16):
            old = _spec(table, "old", d_old)
            times = []
            for r in range(args.repeats):
                path = Path(tmp) / f"c{d_old}-{r}.h5"
                _write(path, table, [old], args.batch)
                before = _fingerprint_bytes(path, "old")
                times.append(_write(path, table, [old, new], args.batch))
                after = _fingerprint_bytes(path, "old")
                report["old_bytes_unchanged"].setdefault(str(d_old), []).append(before == after)
                for file in Path(tmp).iterdir():
                    if file.is_file():
                        file.unlink()
            report["add_seconds"][str(d_old)] = {"median": statistics.median(times), "all": times}
    big, small = (report["add_seconds"][k]["median"] for k in ("1024", "16"))
    report["ratio_big_over_small"] = big / small
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
