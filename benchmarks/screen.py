"""`headstart screen`'s target, measured side by side in one run: screening costs at most 35% of what extracting
the losers fully would have cost, and it picks the winner the full extraction picks.

    t_screen  `run_screen` over the candidates (rounds on growing subsets, then the survivor on every image)
    A         `run_extract` of every candidate in one run (one decode per image feeds all of them)
    W         `run_extract` of the screen's winner alone on every image
    target    (t_screen - W) / (A - W) <= 0.35: what the screen spends beyond the winner's own extraction, as a
              share of what the losers' full extraction costs

Every time is the wall time of the whole call (models built, data scanned, cache published). Then the full
extraction's caches get the same head sweep the screen ranks with (logreg's quick grid on train, val AUROC with a
1,000-resample bootstrap interval): when its intervals separate the leader from the rest, the screen's winner
must be that leader. Random weights by default: the speed does not depend on the weights, and their accuracy
differences are what the screen has to find.

Prints the ratio and the two winners; asserts nothing.

    .venv/bin/python benchmarks/screen.py [--data ../shared/data/kaggle_cxr_224/train] [-b resnet18 -b ...]
                                          [--image-size N (default: the backbones' own, 224)] [--weights random] [--device auto] [--workers N]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from headstart.api import run_extract, run_screen
from headstart.cache.reader import FeatureCache
from headstart.device import resolve_device
from headstart.evaluation.bootstrap import bootstrap_ci
from headstart.evaluation.selection import best_index, val_score
from headstart.evaluation.timing import Timer, describe_device
from headstart.heads.fitting import FitSettings, Rows, run_sweep
from headstart.heads.sweep import get_sweep

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kaggle_cxr_224" / "train"
TARGET = 0.35


def full_ranking(cache_path: Path, *, seed: int, n_boot: int) -> list[tuple[str, float, list[float]]]:
    """(set, val AUROC, interval) per feature set, best first: the screen's ranking, on all of train and val."""
    out = []
    with FeatureCache(cache_path) as cache:
        fit = FitSettings(grid=get_sweep("quick"), class_weight="balanced", n_classes=len(cache.classes), device="cpu")
        for name in cache.feature_sets:
            X, valid = cache.load(name)
            parts = {s: Rows(X[m], cache.labels[m], cache.ids[m], cache.groups[m])
                     for s in ("train", "val") for m in [(cache.splits == s) & valid]}
            sweep = run_sweep("logreg", parts, fit=fit, seed=seed)
            scores = [val_score(parts["val"].y, c.val_proba, metric="auroc", threshold_rule="youden")
                      for c in sweep.candidates]
            best = best_index(scores, metric="auroc")
            ci = bootstrap_ci(parts["val"].y, sweep.candidates[best].val_proba, threshold=None, metrics=("auroc",),
                              n_boot=n_boot, seed=seed)["auroc"]
            out.append((name, float(scores[best]), ci))
    return sorted(out, key=lambda r: -r[1])


def warm_engines(names: list[str], args, device) -> None:
    """Export (once, into the graph cache) every candidate's graph at the benchmark's size, so no timed run pays
    the one-time export (benchmarks/extract_engines.py reports that cost on its own)."""
    from headstart.device import autocast_dtype
    from headstart.extract.features import attach_engine, build_feature_models

    for model in build_feature_models(names, weights=args.weights, image_size=args.image_size, seed=args.seed):
        attach_engine(model, args.engine, device, amp_dtype=autocast_dtype("auto", device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("-b", "--backbone", dest="backbones", action="append",
                        help="candidate (repeat; default: resnet18, densenet121, mobilenet_v3_large)")
    parser.add_argument("--weights", default="random")
    parser.add_argument("--image-size", type=int, default=None, help="default: the backbones' own size (224)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--engine", default="auto", choices=["auto", "torch", "onnxruntime"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args()
    if not args.data.exists():
        print(f"skipped: {args.data} is absent; pass --data with an image folder")
        return
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    backbones = args.backbones or ["resnet18", "densenet121", "mobilenet_v3_large"]
    device = resolve_device(args.device)
    print(f"device: {describe_device(device)}; data {args.data}; candidates {', '.join(backbones)}; "
          f"{args.weights} weights at {args.image_size or 'their own size in'} px")
    common = dict(weights=args.weights, image_size=args.image_size, batch_size=args.batch_size, device=str(device),
                  workers=args.workers, seed=args.seed, engine=args.engine)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["HEADSTART_ONNX_CACHE"] = str(tmp / "graphs")  # exported once, below, for all three runs
        warm_engines(backbones, args, device)
        run_extract(args.data, tmp / "warm.h5", backbones=[backbones[0]], **{**common, "image_size": 16,
                                                                            "engine": "torch"})  # page cache
        with Timer(device=device) as screen_timer:
            screened = run_screen(args.data, tmp / "screen.h5", backbones=backbones, n_boot=args.n_boot, **common)
        winner = screened.survivors[0]
        with Timer(device=device) as all_timer:
            run_extract(args.data, tmp / "all.h5", backbones=backbones, **common)
        with Timer(device=device) as winner_timer:
            run_extract(args.data, tmp / "winner.h5", backbones=[winner], **common)
        ranking = full_ranking(tmp / "all.h5", seed=args.seed, n_boot=args.n_boot)

    for entry in screened.document["rounds"]:
        results = ", ".join(f"{r['backbone']} {r['val_auroc']:.3f} [{r['val_auroc_ci'][0]:.3f}, "
                            f"{r['val_auroc_ci'][1]:.3f}] {r['seconds']:.1f} s" for r in entry["results"])
        print(f"  round {entry['round']} on {entry['n_images']} images: {results}; dropped "
              f"{', '.join(d['backbone'] for d in entry['dropped']) or 'none'}")
    t, a, w = screen_timer.seconds, all_timer.seconds, winner_timer.seconds
    print(f"\nt_screen {t:.1f} s, A (all {len(backbones)} in one extraction) {a:.1f} s, W ({winner} alone) {w:.1f} s")
    ratio = (t - w) / (a - w) if a > w else float("nan")
    print(f"(t_screen - W) / (A - W) = {ratio:.3f} (target <= {TARGET}: {'met' if ratio <= TARGET else 'NOT met'})")

    print("\nfull extraction + the same head sweep (val AUROC [95% CI]):")
    for name, auroc, ci in ranking:
        print(f"  {name:<24} {auroc:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]")
    leader, rest = ranking[0], ranking[1:]
    separated = all(leader[2][0] > r[2][1] for r in rest)
    agree = leader[0] == winner
    print(f"screen winner {winner}, full-extraction leader {leader[0]}: "
          f"{'agree' if agree else 'differ'}; the full intervals {'separate' if separated else 'do not separate'} "
          f"the leader" + ("" if agree or not separated else " -> the screen picked the wrong winner"))


if __name__ == "__main__":
    from result import run  # benchmarks/result.py: --json PATH writes the output with command, date, machine, load

    sys.exit(run(main))
