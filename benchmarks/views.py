"""Cached augmented views (`extract --views K --tta M`, `heads --views on --tta on`) measured on real chest X-rays.

On a stratified subset of ../shared/data/kaggle_cxr_224 (default 600 images, written as a manifest by
`crop.kaggle_manifest`; the subset's val and test are carved by headstart, grouped by patient where the file
names give one), with resnet18:
1. extraction cost: the whole `run_extract` with K views and M test-time views as a ratio to a plain extract of
   the same images (target for K = 4, M = 2: at most 0.8 x (K + 1)), and `--views K` for each --also-k, in
   wall time and in the process's CPU time (`extraction` says how the runs interleave). Beside each ratio: the
   backbone forwards per image it implies (1 + K per training row, 1 + M per val/test row), the floor of the
   ratio when the forward is all the cost, and the CPU ratio per forward (below 1: a view costs less than a
   plain row, because the decode is shared);
2. head sweep time with views as a ratio to without (sum of the records' train seconds per head);
3. test AUROC of the head best on val without views, with views, with views + TTA, all on the same splits,
   with paired DeLong tests (patient-clustered where groups are known).

With --weights random (the default: no pretrained weights here) the features carry little signal and an
effect of the views may be nil; the script prints what it measures. --keep DIR keeps the caches.

    PYTHONPATH=. .venv/bin/python benchmarks/views.py [--images 600] [--views 4] [--tta 2] [--also-k 8]
        [--repeats 3] [--skip-heads] [--weights random] [--sweep default] [--keep DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crop import DATA, kaggle_manifest  # noqa: E402  (the benchmarks' shared subset manifest)

from headstart.api import run_extract, run_heads  # noqa: E402
from headstart.evaluation.paired import delong_test  # noqa: E402


def extract(manifest: Path, cache: Path, args, k: int, m: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process's threads) of one whole `run_extract`."""
    if cache.exists():
        cache.unlink()
    t0, c0 = time.perf_counter(), time.process_time()
    run_extract(manifest, cache, backbones=["resnet18"], weights=args.weights, device="cpu", seed=args.seed,
                views=k, tta=m, augment=args.augment)
    return time.perf_counter() - t0, time.process_time() - c0


def forwards_per_image(cache: Path) -> float:
    """Backbone forwards per image the cache's views imply: the plain one, plus K or M per row that has them."""
    with h5py.File(cache, "r") as f:
        n = len(f["samples/id"])
        extra = sum(int(f[f"valid/{name}"][...].sum()) * int(f[f"features/{name}"].attrs["views"])
                    for name in f["features"] if "view_of" in f[f"features/{name}"].attrs)
    return 1 + extra / n


def extraction(manifest: Path, folder: Path, args) -> dict:
    """Each round runs plain, setting, plain, setting, ..., plain (settings in a rotated order), and each setting's
    ratio is to the mean of the two plain runs around it; the reported ratio is the median over rounds. Wall
    time on a machine shared with other jobs swings with their load, so the CPU time of the process (all its
    threads: decode, augmentation, forward) is reported beside it: the work the command does."""
    settings = [(args.views, args.tta), *[(k, 0) for k in args.also_k]]
    ratios: dict[tuple, dict[str, list[float]]] = {s: {"wall": [], "cpu": []} for s in settings}
    runs: list[dict] = []
    plain_path = folder / "k0_m0.h5"
    for r in range(args.repeats):
        before = extract(manifest, plain_path, args, 0, 0)
        runs.append({"round": r, "views": 0, "tta": 0, "wall": before[0], "cpu": before[1]})
        for k, m in settings[r % len(settings):] + settings[:r % len(settings)]:
            wall, cpu = extract(manifest, folder / f"k{k}_m{m}.h5", args, k, m)
            after = extract(manifest, plain_path, args, 0, 0)
            runs += [{"round": r, "views": k, "tta": m, "wall": wall, "cpu": cpu},
                     {"round": r, "views": 0, "tta": 0, "wall": after[0], "cpu": after[1]}]
            ratios[k, m]["wall"].append(wall / ((before[0] + after[0]) / 2))
            ratios[k, m]["cpu"].append(cpu / ((before[1] + after[1]) / 2))
            print(f"  round {r + 1}: --views {k} --tta {m}: {wall:.1f} s wall, {cpu:.1f} s CPU; plain around it "
                  f"{before[0]:.1f} / {after[0]:.1f} s wall, {before[1]:.1f} / {after[1]:.1f} s CPU "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
            before = after
    plain = [x for x in runs if x["views"] == 0]
    out = {"runs": runs, "settings": {}}
    print(f"extract, {args.images} images, {args.repeats} rounds: plain median {np.median([x['wall'] for x in plain]):.1f}"
          f" s wall, {np.median([x['cpu'] for x in plain]):.1f} s CPU")
    print("| setting | ratio to plain, wall (median) | ratio, CPU time (median) | forwards / image (the ratio's floor "
          "when the forward is all the cost) | CPU ratio per forward | target |")
    print("|---|---|---|---|---|---|")
    for k, m in settings:
        wall, cpu = (float(np.median(ratios[k, m][t])) for t in ("wall", "cpu"))
        fwd = forwards_per_image(folder / f"k{k}_m{m}.h5")
        target = 0.8 * (k + 1) if (k, m) == (args.views, args.tta) else None
        out["settings"][f"views{k}_tta{m}"] = {"ratios": ratios[k, m], "ratio_wall": wall, "ratio_cpu": cpu,
                                                "forwards_per_image": fwd, "target": target}
        print(f"| --views {k} --tta {m} | {wall:.2f} | {cpu:.2f} | {fwd:.2f} | {cpu / fwd:.2f} "
              f"| {f'<= {target:.1f}' if target else f'(K + 1 = {k + 1})'} |", flush=True)
    return out


def best(records) -> dict:
    """The run with the best val AUROC (ties: the first), and its test predictions."""
    run = max(records, key=lambda r: r.metrics["val"]["auroc"])
    test = run.predictions["test"]
    return {"run": run, "ids": list(test["ids"]), "y": np.asarray(test["y_true"]),
            "p": np.asarray(test["proba"])[:, 1], "groups": test.get("groups")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--tta", type=int, default=2)
    ap.add_argument("--also-k", type=int, nargs="*", default=[])
    ap.add_argument("--augment", default="light")
    ap.add_argument("--weights", default="random")
    ap.add_argument("--sweep", default="default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-heads", action="store_true")
    ap.add_argument("--keep", type=Path, help="keep the manifest and caches in this folder")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out: dict = {"images": args.images, "weights": args.weights, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        manifest = kaggle_manifest(DATA / "kaggle_cxr_224", args.images, args.seed, folder)
        out["load_before"] = os.getloadavg()
        out["extract"] = extraction(manifest, folder, args)
        out["load_after"] = os.getloadavg()
        if args.skip_heads:
            if args.json:
                args.json.write_text(json.dumps(out, indent=2, default=float))
            return
        views_h5 = folder / f"k{args.views}_m{args.tta}.h5"
        sweeps = {}
        for views, tta in (("off", "off"), ("on", "off"), ("on", "on")):
            records = run_heads(views_h5, folder / f"runs_{views}_{tta}", device="cpu", sweep=args.sweep, views=views,
                                tta=tta, progress=False)
            secs = {r.head: r.timing["train_seconds"] for r in records}
            sweeps[views, tta] = (records, secs)
            print(f"heads --views {views} --tta {tta}: train s {({h: round(s, 1) for h, s in secs.items()})}; "
                  f"test AUROC {({r.head: round(r.metrics['test']['auroc'], 3) for r in records})}", flush=True)
        base = sweeps["off", "off"][1]
        out["heads_seconds"] = {f"{v}/{t}": s for (v, t), (_, s) in sweeps.items()}
        out["heads_ratio_views"] = {h: sweeps["on", "off"][1][h] / base[h] for h in base}
        print("head sweep time with views / without:", {h: round(r, 2) for h, r in out["heads_ratio_views"].items()})
        picks = {key: best(records) for key, (records, _) in sweeps.items()}
        names = {("off", "off"): "plain", ("on", "off"): "views", ("on", "on"): "views+TTA"}
        print("| setting | best head on val | test AUROC [95% CI] |")
        print("|---|---|---|")
        for key, pick in picks.items():
            m = pick["run"].metrics["test"]
            print(f"| {names[key]} | {pick['run'].head} | {m['auroc']:.3f} [{m['auroc_ci'][0]:.3f}, "
                  f"{m['auroc_ci'][1]:.3f}] |")
        out["best"] = {names[k]: {"head": p["run"].head, "test_auroc": p["run"].metrics["test"]["auroc"]}
                       for k, p in picks.items()}
        out["delong"] = {}
        for a, b in ((("on", "off"), ("off", "off")), (("on", "on"), ("off", "off")), (("on", "on"), ("on", "off"))):
            pa, pb = picks[a], picks[b]
            assert pa["ids"] == pb["ids"], "the settings' test splits differ"
            d = delong_test(pa["y"], pa["p"], pb["p"], groups=pa["groups"])
            out["delong"][f"{names[a]} vs {names[b]}"] = d
            print(f"{names[a]} vs {names[b]}: diff {d['diff']:+.3f} [{d['ci_diff'][0]:+.3f}, {d['ci_diff'][1]:+.3f}]"
                  f", p = {d['p_value']:.2f} ({d['method']})", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
