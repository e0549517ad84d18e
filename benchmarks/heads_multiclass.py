"""Issue 23's multi-class target, measured side by side in one run: the whole `headstart heads CACHE --head logreg`
command on the real 3-class Kaggle task (NORMAL / BACTERIA / VIRUS) against the binary task (NORMAL / PNEUMONIA)
on the SAME features, rows and splits. Target: the 3-class command takes at most 3x the binary one.

The binary cache is --cache (a cache of ../shared/data/kaggle_cxr_224 whose ids are the Kaggle file names), else it
is built here with `headstart extract kaggle_cxr_224 -b resnet18 --weights random --image-size N` (several CPU
minutes at 224 px). The 3-class cache is written from it with `write_features`: the same features, ids, splits and
patient groups, PNEUMONIA split by the file names' `_bacteria_` / `_virus_` (1,341 / 2,530 / 1,345 images).
The two commands alternate, --repeats times each (fresh processes, start-up included); medians are compared.

--reference also fits the slow path this replaced (one sklearn multinomial lbfgs fit per C, warm-started in
ascending C) in this process and prints its selected C and val / test macro AUROC next to the record's:
quality holds when both are within 0.005. Prints; asserts nothing.

    .venv/bin/python benchmarks/heads_multiclass.py [--cache KAGGLE.h5] [--image-size 224] [--repeats 3]
                                                    [--sweep default] [--reference]
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
DATA = REPO.parent / "shared" / "data" / "kaggle_cxr_224"
SET = "resnet18"
THREE = ["NORMAL", "BACTERIA", "VIRUS"]


def binary_cache(path: Path | None, tmp: Path, image_size: int) -> Path:
    if path is not None:
        return path
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} is absent and no --cache was given: this benchmark needs the real Kaggle images")
    out = tmp / "binary.h5"
    cmd = [sys.executable, "-m", "headstart", "-q", "extract", str(DATA), "-o", str(out), "-b", SET,
           "--weights", "random", "--image-size", str(image_size)]
    print("building the binary cache:", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, check=True, env=_env())
    return out


def three_class_cache(binary: Path, out: Path) -> Path:
    """The same rows and features, PNEUMONIA split into BACTERIA / VIRUS by the Kaggle file names."""
    from headstart import open_cache
    from headstart.cache.external import write_features

    with open_cache(binary) as cache:
        group_of = dict(zip(cache.samples["id"], cache.samples["group"]))
        parts = [(split, *cache.arrays(SET, split)) for split in cache.splits]
        classes = cache.classes
    ids = [str(i) for _, _, _, ids in parts for i in ids]
    labels = []
    for _, _, y, names in parts:
        for label, name in zip(y, names):
            kind = "BACTERIA" if "_bacteria_" in name else "VIRUS" if "_virus_" in name else None
            if classes[label] == "NORMAL":
                labels.append("NORMAL")
            elif kind is None:
                raise SystemExit(f"{name}: a PNEUMONIA file name without _bacteria_ or _virus_; expected Kaggle names")
            else:
                labels.append(kind)
    write_features(out, features={SET: np.concatenate([X for _, X, _, _ in parts])}, labels=labels, ids=ids,
                   splits=[s for s, _, _, n in parts for _ in n], classes=THREE,
                   groups=[group_of[i] for i in ids], backbones={SET: SET}, overwrite=True)
    print("3-class cache:", {c: labels.count(c) for c in THREE}, flush=True)
    return out


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def timed_heads(cache: Path, runs: Path, sweep: str) -> float:
    """Wall seconds of `headstart heads CACHE --head logreg` as a user runs it (a fresh process)."""
    cmd = [sys.executable, "-m", "headstart", "-q", "heads", str(cache), "-o", str(runs), "--head", "logreg",
           "--sweep", sweep]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=_env(), stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def reference(cache: Path, sweep: str, record) -> None:
    """The slow path: one sklearn multinomial fit per C, warm-started in ascending C, selected on val macro AUROC,
    with the record's class weighting; each C's val AUROC is compared with the record's sweep scores."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from headstart import open_cache
    from headstart.heads.sweep import get_sweep

    with open_cache(cache) as c:
        (Xt, yt, _), (Xv, yv, _), (Xs, ys, _) = (c.arrays(SET, s) for s in ("train", "val", "test"))
    scaler = StandardScaler().fit(Xt)
    ours = {float(s["C"]): s["auroc"] for s in record.config.get("sweep_scores", [])}
    weight = record.config.get("class_weight")
    start, best, model, gaps = time.perf_counter(), None, None, []
    for C in sorted(get_sweep(sweep).logreg_C):
        model = model or LogisticRegression(max_iter=1000, warm_start=True,
                                            class_weight="balanced" if weight == "balanced" else None)
        model.C = C
        model.fit(scaler.transform(Xt), yt)
        val = roc_auc_score(yv, model.predict_proba(scaler.transform(Xv)), multi_class="ovr")
        gaps += [abs(val - ours[float(C)])] if float(C) in ours else []
        if best is None or val > best[1]:
            test = roc_auc_score(ys, model.predict_proba(scaler.transform(Xs)), multi_class="ovr")
            best = (C, val, test)
    print(f"slow path (sklearn per C, warm-started, class_weight {weight}): {time.perf_counter() - start:.1f} s to "
          f"fit; selected C={best[0]:g}, val macro AUROC {best[1]:.4f}, test {best[2]:.4f}; largest val AUROC gap "
          f"to the record's sweep over {len(gaps)} Cs: {max(gaps, default=float('nan')):.5f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, help="binary Kaggle cache with a resnet18 set (else extracted here)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep", default="default")
    parser.add_argument("--reference", action="store_true", help="also fit the slow sklearn path (minutes)")
    args = parser.parse_args()
    from headstart.evaluation.records import read_records

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        caches = {"binary": binary_cache(args.cache, tmp, args.image_size)}
        caches["3-class"] = three_class_cache(caches["binary"], tmp / "three.h5")
        print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
        times: dict[str, list[float]] = {task: [] for task in caches}
        for repeat in range(args.repeats):  # alternate, so a change in the machine's load hits both alike
            for task, cache in caches.items():
                times[task].append(timed_heads(cache, tmp / f"runs-{task}-{repeat}", args.sweep))
        print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(f"\n`headstart heads CACHE --head logreg --sweep {args.sweep}`, same {SET} features, median of "
              f"{args.repeats}:")
        print(f"{'task':<8} {'command s':>9}  {'runs':<22} {'train s':>7}  {'val AUROC':>9}  {'test AUROC':>10}  C")
        for task in caches:
            (record,) = read_records(tmp / f"runs-{task}-{args.repeats - 1}")
            print(f"{task:<8} {statistics.median(times[task]):9.2f}  "
                  f"{', '.join(f'{t:.1f}' for t in times[task]):<22} {record.timing['train_seconds']:7.2f}  "
                  f"{record.metrics['val']['auroc']:9.4f}  {record.metrics['test']['auroc']:10.4f}  "
                  f"{record.config.get('C', record.config)}")
        ratio = statistics.median(times["3-class"]) / statistics.median(times["binary"])
        print(f"\n3-class / binary command time: {ratio:.2f}x (target: at most 3x)")
        if args.reference:
            (record,) = read_records(tmp / f"runs-3-class-{args.repeats - 1}")
            reference(caches["3-class"], args.sweep, record)


if __name__ == "__main__":
    main()
