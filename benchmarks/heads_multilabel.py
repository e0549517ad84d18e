"""Issue 23's multi-label heads target: the default logreg sweep on a generated 100,000 x 1,024 float16 cache with
14 findings (uncertain and blank labels included) against the binary sweep on the SAME features, rows and splits.
Targets: the multi-label sweep takes at most 3x the binary one; peak memory within the binary run's + 20 %.

Two caches are written with `write_features`: the multi-label one (raw codes: 1 / 0 / -1 uncertain / -2 blank,
prevalences 1-30 %, each finding a noisy linear function of the features) and a binary one whose label is
"any finding positive" on the same rows. Each `headstart heads CACHE --head logreg --sweep default` runs as a
fresh process (start-up included); the two alternate, --repeats times each, and medians are compared. Reported:
the command's wall time, the sweep's `train_seconds` from the record (the target), the evaluation's
`eval_seconds`, and the process's peak RSS (os.wait4). Prints; asserts nothing.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/heads_multilabel.py [--rows 100000] [--dim 1024] [--repeats 3]
                                                                    [--n-boot 1000] [--head logreg]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.result import run  # noqa: E402

FINDINGS = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
            "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia"]
SET = "resnet18"


def generate(rows: int, dim: int, seed: int = 0):
    """(X float16 (rows, dim), raw int8 (rows, 14), splits, groups), built in blocks (never a float64 copy)."""
    rng = np.random.default_rng(seed)
    L = len(FINDINGS)
    direction = rng.normal(size=(dim, L)).astype(np.float32) / np.sqrt(dim)
    prevalence = np.linspace(0.30, 0.01, L)
    X = np.empty((rows, dim), dtype=np.float16)
    score = np.empty((rows, L), dtype=np.float32)
    for start in range(0, rows, 8192):
        block = rng.normal(size=(min(8192, rows - start), dim)).astype(np.float32)
        X[start:start + len(block)] = block
        score[start:start + len(block)] = block @ direction * 3.0 + rng.normal(size=(len(block), L))
    cut = np.array([np.quantile(score[:, j], 1.0 - prevalence[j]) for j in range(L)])
    raw = (score > cut).astype(np.int8)
    u = rng.random(raw.shape)
    raw[u < 0.05] = -1  # uncertain
    raw[(u >= 0.05) & (u < 0.15)] = -2  # blank
    patients = np.arange(rows) // 3
    split_of = rng.choice(["train", "val", "test"], size=patients.max() + 1, p=[0.7, 0.1, 0.2])
    return X, raw, split_of[patients], np.array([f"p{p}" for p in patients])


def write_caches(tmp: Path, rows: int, dim: int) -> dict[str, Path]:
    from headstart.cache import write_features

    X, raw, splits, groups = generate(rows, dim)
    ids = [f"img/{i:06d}.png" for i in range(rows)]
    common = dict(features={SET: X}, ids=ids, splits=list(splits), groups=list(groups), backbones={SET: SET})
    caches = {"binary": tmp / "binary.h5", "multilabel": tmp / "multilabel.h5"}
    write_features(caches["multilabel"], labels=raw, classes=FINDINGS, **common)
    write_features(caches["binary"], labels=(raw == 1).any(axis=1).astype(int).tolist(),
                   classes=["no finding", "finding"], **common)
    print(f"caches: {rows:,} x {dim:,} float16, {len(FINDINGS)} findings; labels uncertain "
          f"{(raw == -1).mean():.1%}, blank {(raw == -2).mean():.1%}; split sizes "
          f"{ {s: int((splits == s).sum()) for s in ('train', 'val', 'test')} }", flush=True)
    return caches


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def timed_heads(cache: Path, runs: Path, head: str, n_boot: int) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of `headstart heads CACHE --head H --sweep default` as a fresh process."""
    cmd = [sys.executable, "-m", "headstart", "-q", "heads", str(cache), "-o", str(runs), "--head", head,
           "--sweep", "default", "--n-boot", str(n_boot), "--device", "cpu"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}")
    return seconds, usage.ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--head", default="logreg")
    args = parser.parse_args()
    from headstart.evaluation.records import read_records

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        caches = write_caches(tmp, args.rows, args.dim)
        print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
        wall: dict[str, list[float]] = {task: [] for task in caches}
        rss: dict[str, list[float]] = {task: [] for task in caches}
        train: dict[str, list[float]] = {task: [] for task in caches}
        evals: dict[str, list[float]] = {task: [] for task in caches}
        last = {}
        for repeat in range(args.repeats):  # alternate, so a change in the machine's load hits both alike
            for task, cache in caches.items():
                runs = tmp / f"runs-{task}-{repeat}"
                seconds, peak = timed_heads(cache, runs, args.head, args.n_boot)
                (record,) = read_records(runs)
                wall[task].append(seconds)
                rss[task].append(peak)
                train[task].append(record.timing["train_seconds"])
                evals[task].append(record.timing["eval_seconds"])
                last[task] = record
                print(f"  repeat {repeat} {task}: command {seconds:.1f} s, sweep {train[task][-1]:.1f} s, "
                      f"eval {evals[task][-1]:.1f} s, peak RSS {peak:.0f} MiB", flush=True)
        print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        med = {name: {t: statistics.median(v[t]) for t in caches} for name, v in
               (("wall", wall), ("train", train), ("eval", evals), ("rss", rss))}
        print(f"\n`headstart heads CACHE --head {args.head} --sweep default --n-boot {args.n_boot}`, same features, "
              f"median of {args.repeats}:")
        print(f"{'task':<10} {'command s':>9} {'sweep s':>8} {'eval s':>7} {'peak MiB':>9}  {'val AUROC':>9}  "
              f"{'test AUROC':>10}  C")
        for task in caches:
            r = last[task]
            print(f"{task:<10} {med['wall'][task]:9.1f} {med['train'][task]:8.1f} {med['eval'][task]:7.1f} "
                  f"{med['rss'][task]:9.0f}  {r.metrics['val']['auroc']:9.4f}  {r.metrics['test']['auroc']:10.4f}  "
                  f"{r.config.get('C', '')}")
        ratio = {k: med[k]["multilabel"] / med[k]["binary"] for k in med}
        print(f"\nmulti-label / binary: sweep {ratio['train']:.2f}x (target: at most 3x), command "
              f"{ratio['wall']:.2f}x, peak memory {ratio['rss']:.2f}x (target: at most 1.20x)")


if __name__ == "__main__":
    run(main)
