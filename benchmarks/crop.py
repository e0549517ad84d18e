"""The plain view's crop (`extract --crop center|full|pad`) measured on real chest X-rays.

(a) Kaggle pneumonia (../shared/data/kaggle_cxr_224): a stratified subset (default 1,000 images) written as a
    manifest to a temporary folder; for each crop `run_extract` (resnet18, --weights random unless --weights)
    and `run_heads --head logreg`, all on the same patient-grouped splits. Prints test AUROC with its 95 %
    bootstrap interval per crop, and a paired DeLong test of each crop against `center`.
(b) NIH ChestX-ray14 sample (../shared/data/nih_cxr14_sample, multi-label): `Data_Entry_2017.csv` is parsed
    here (headstart has no multi-label reader yet). Features come from headstart's own extraction code
    (`extract.features`: the backbone with its preprocessing at each crop, decoded by `data.decode`); one
    logistic regression per finding (one-vs-rest, standardised features, balanced class weights) is scored by
    patient-grouped 5-fold cross-validation, and the out-of-fold AUROC is reported per finding and as a macro
    mean over findings with >= --min-pos positives, with a patient-cluster bootstrap interval of the macro
    difference from `center`.

The Kaggle files are 224 x 224 (resized by a third party, aspect not kept) and the NIH ones 64 x 64: on square
images `full` and `pad` give the same pixels, and `center` differs by cutting 12.5 % off every side.

    PYTHONPATH=. .venv/bin/python benchmarks/crop.py [--kaggle-images 1000] [--seeds 0 1 2] [--skip-kaggle]
        [--json PATH]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from headstart.api import run_extract, run_heads
from headstart.backbones.names import CROPS
from headstart.data.decode import decode_image
from headstart.evaluation.paired import delong_test
from headstart.extract.features import attach_engine, build_feature_models, compute_features
from headstart.extract.preprocess import stack_channels_last, to_uint8_tensor

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def kaggle_manifest(root: Path, n: int, seed: int, folder: Path) -> Path:
    """A stratified random subset of the Kaggle train split as a `path,label` manifest (absolute paths)."""
    rng = random.Random(seed)
    files = {c: sorted((root / "train" / c).glob("*.jpeg")) for c in ("NORMAL", "PNEUMONIA")}
    total = sum(len(v) for v in files.values())
    rows = []
    for label, paths in files.items():
        rows += [(str(p), label) for p in rng.sample(paths, round(n * len(paths) / total))]
    path = folder / "kaggle_subset.csv"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([("path", "label"), *rows])
    return path


def kaggle(args, folder: Path) -> None:
    manifest = kaggle_manifest(DATA / "kaggle_cxr_224", args.kaggle_images, args.seed, folder)
    print(f"\n(a) Kaggle pneumonia, {args.kaggle_images} images, resnet18 --weights {args.weights}, logreg")
    print("| crop | extract s | test AUROC [95% CI] | n test | vs center: diff [95% CI], DeLong p |")
    print("|---|---|---|---|---|")
    preds = {}
    for crop in args.crops:
        cache, runs = folder / f"k_{crop}.h5", folder / f"runs_{crop}"
        t0 = time.perf_counter()
        run_extract(manifest, cache, backbones=["resnet18"], weights=args.weights, crop=crop, device="cpu",
                    seed=args.seed)
        seconds = time.perf_counter() - t0
        [record] = run_heads(cache, runs, heads=["logreg"], device="cpu", progress=False)
        test = record.predictions["test"]
        preds[crop] = (list(test["ids"]), np.asarray(test["y_true"]), np.asarray(test["proba"])[:, 1])
        m = record.metrics["test"]
        versus = ""
        if crop != "center" and "center" in preds:
            ids, y, p = preds["center"]
            assert ids == preds[crop][0], "the crops' test splits differ"
            d = delong_test(y, preds[crop][2], p)
            versus = f"{d['diff']:+.3f} [{d['ci_diff'][0]:+.3f}, {d['ci_diff'][1]:+.3f}], p = {d['p_value']:.2f}"
        print(f"| {crop} | {seconds:.0f} | {m['auroc']:.3f} [{m['auroc_ci'][0]:.3f}, {m['auroc_ci'][1]:.3f}] | "
              f"{len(preds[crop][0])} | {versus} |", flush=True)


def nih_table(root: Path) -> tuple[list[Path], np.ndarray, list[str], np.ndarray]:
    """(image paths, (N, L) 0/1 labels, finding names, patient ids) from NIH's own CSV layout."""
    with open(root / "Data_Entry_2017.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    findings = sorted({f for r in rows for f in r["Finding Labels"].split("|")} - {"No Finding"})
    paths = [root / "images" / r["Image Index"] for r in rows]
    labels = np.array([[f in r["Finding Labels"].split("|") for f in findings] for r in rows], dtype=np.int64)
    return paths, labels, findings, np.array([r["Patient ID"] for r in rows])


def nih_features(paths: list[Path], crop: str, seed: int, weights: str, batch: int = 64) -> np.ndarray:
    """resnet18 features of every image with headstart's extraction code at `crop`."""
    [model] = build_feature_models(["resnet18"], weights=weights, image_size=None, seed=seed, crop=crop)
    attach_engine(model, "torch", torch.device("cpu"), amp_dtype=None)
    prep = model.backbone.preprocessing
    out = []
    for start in range(0, len(paths), batch):
        crops = [to_uint8_tensor(decode_image(p, min_size=prep.resize_size), prep) for p in paths[start:start + batch]]
        out.append(compute_features([model], {model.geometry: stack_channels_last(crops)},
                                    device=torch.device("cpu"))[model.name])
    return np.concatenate(out)


def oof_scores(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold probabilities of one logistic regression per finding, patient-grouped folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    P = np.full(Y.shape, np.nan)
    for train, test in GroupKFold(folds, shuffle=True, random_state=seed).split(X, groups=groups):
        for j in range(Y.shape[1]):
            if Y[train, j].min() == Y[train, j].max():
                continue  # no positive in this fold's train part: the finding stays unscored here
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, class_weight="balanced", max_iter=2000))
            P[test, j] = clf.fit(X[train], Y[train, j]).predict_proba(X[test])[:, 1]
    return P


def macro(Y: np.ndarray, P: np.ndarray, keep: np.ndarray, rows: np.ndarray | None = None) -> float:
    from sklearn.metrics import roc_auc_score

    rows = np.arange(len(Y)) if rows is None else rows
    scores = []
    for j in np.flatnonzero(keep):
        y, p = Y[rows, j], P[rows, j]
        ok = ~np.isnan(p)
        if y[ok].min() != y[ok].max():
            scores.append(roc_auc_score(y[ok], p[ok]))
    return float(np.mean(scores))


def nih(args) -> None:
    from sklearn.metrics import roc_auc_score

    paths, Y, findings, groups = nih_table(DATA / "nih_cxr14_sample")
    keep = Y.sum(0) >= args.min_pos
    print(f"\n(b) NIH ChestX-ray14 sample: {len(paths)} images, {len(set(groups))} patients, resnet18 --weights "
          f"{args.weights}, seeds {args.seeds}; one-vs-rest logreg, patient-grouped {args.folds}-fold OOF AUROC")
    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    macros: dict[str, list[float]] = defaultdict(list)
    diffs: dict[str, list[float]] = defaultdict(list)
    for seed in args.seeds:
        oof = {}
        for crop in args.crops:
            t0 = time.perf_counter()
            X = nih_features(paths, crop, seed, args.weights)
            oof[crop] = oof_scores(X, Y, groups, args.folds, seed)
            for j, f in enumerate(findings):
                ok = ~np.isnan(oof[crop][:, j])
                if Y[ok, j].min() != Y[ok, j].max():
                    per[crop][f].append(roc_auc_score(Y[ok, j], oof[crop][ok, j]))
            macros[crop].append(macro(Y, oof[crop], keep))
            print(f"  seed {seed} {crop}: macro AUROC {macros[crop][-1]:.3f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
        rng = np.random.default_rng(seed)
        patients = np.unique(groups)
        by_patient = {g: np.flatnonzero(groups == g) for g in patients}
        for crop in args.crops:
            if crop == "center":
                continue
            boot = []
            for _ in range(args.n_boot):  # resample whole patients, the same rows for both crops
                rows = np.concatenate([by_patient[g] for g in rng.choice(patients, len(patients))])
                boot.append(macro(Y, oof[crop], keep, rows) - macro(Y, oof["center"], keep, rows))
            diffs[crop].append((macros[crop][-1] - macros["center"][-1], *np.percentile(boot, [2.5, 97.5])))
    print("\n| finding | n pos | " + " | ".join(f"{c} AUROC" for c in args.crops) + " |")
    print("|---|---|" + "---|" * len(args.crops))
    for j, f in enumerate(findings):
        cells = [f"{np.mean(per[c][f]):.3f}" if per[c][f] else "n/a" for c in args.crops]
        print(f"| {f}{'' if keep[j] else ' *'} | {Y[:, j].sum()} | " + " | ".join(cells) + " |")
    print(f"| **macro** (n pos >= {args.min_pos}) | | " + " | ".join(
        f"**{np.mean(macros[c]):.3f}**" for c in args.crops) + " |")
    print("(per-finding cells: mean over seeds; * = fewer than --min-pos positives, left out of the macro)")
    for crop, rows in diffs.items():
        for seed, (d, lo, hi) in zip(args.seeds, rows):
            print(f"  {crop} - center, seed {seed}: macro {d:+.3f} [95% patient bootstrap {lo:+.3f}, {hi:+.3f}]")


def same_pixels_on_square_images(paths: list[Path], n: int = 20) -> bool:
    """`full` and `pad` crop a square image identically: checked on real files, not assumed."""
    from headstart.backbones.types import Preprocessing

    full, pad = Preprocessing(crop="full"), Preprocessing(crop="pad")
    return all(torch.equal(to_uint8_tensor(img, full), to_uint8_tensor(img, pad))
               for img in (decode_image(p) for p in paths[:n]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kaggle-images", type=int, default=1000)
    parser.add_argument("--weights", default="random")
    parser.add_argument("--crops", nargs="+", default=list(CROPS), choices=CROPS)
    parser.add_argument("--seed", type=int, default=0, help="subset, splits and Kaggle backbone seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="NIH backbone seeds")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--min-pos", type=int, default=10)
    parser.add_argument("--n-boot", type=int, default=200)
    parser.add_argument("--skip-kaggle", action="store_true")
    parser.add_argument("--skip-nih", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, format="%(message)s")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average {os.getloadavg()}")
    for name in ("kaggle_cxr_224/train/NORMAL", "nih_cxr14_sample/images"):
        files = sorted(p for p in (DATA / name).iterdir() if p.suffix in (".png", ".jpeg"))
        print(f"{name}: full and pad give identical pixels on 20 files: {same_pixels_on_square_images(files)}")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_nih:
            nih(args)
        if not args.skip_kaggle:
            kaggle(args, Path(tmp))
    print(f"load average at the end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    from result import run  # benchmarks/result.py: --json PATH writes the output with command, date, machine, load

    sys.exit(run(main))
