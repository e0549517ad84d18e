"""Issue 25's comparison table: plain head, views, views + TTA and a 2-epoch fine-tune on the same splits.

On a stratified subset of ../shared/data/kaggle_cxr_224 (default 1,000 images at --image-size 112, to fit a
shared CPU), resnet18 with --weights random unless told otherwise:
1. `extract --views K --tta M` once; `heads` with views off, on, and on + TTA (heads --heads); the head best on
   val in each setting is tested once;
2. `finetune --epochs 2` on the same splits (`splits_from` the cache), the same image size and seed;
3. paired DeLong tests (patient-clustered where groups are known) between the settings at 100 % of the labels;
4. `curve --views on` at --sizes (default 2 % and 5 % of train, --repeats draws each) for each head, and
   `finetune --train-size S --seed r` on the same draws: mean test AUROC over draws with its t-interval.
   curve.json keeps metrics, not predictions, so the small sizes compare means and intervals, not DeLong.

With random weights the features carry little signal and the effect of the views may be small or nil: the script
prints what it measures.

    PYTHONPATH=. .venv/bin/python benchmarks/views_table.py [--images 1000] [--image-size 112] [--views 4]
        [--tta 2] [--heads logreg linear knn] [--sizes 2% 5%] [--repeats 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crop import DATA, kaggle_manifest  # noqa: E402

from headstart.api import run_curve, run_extract, run_finetune, run_heads  # noqa: E402
from headstart.evaluation.curve_fit import mean_ci  # noqa: E402
from headstart.evaluation.paired import delong_test  # noqa: E402


def test_scores(record) -> dict:
    test = record.predictions["test"]
    return {"ids": list(test["ids"]), "y": np.asarray(test["y_true"]), "p": np.asarray(test["proba"])[:, 1],
            "groups": test.get("groups"), "auroc": record.metrics["test"]["auroc"],
            "ci": record.metrics["test"]["auroc_ci"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--image-size", type=int, default=112)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--tta", type=int, default=2)
    ap.add_argument("--heads", nargs="*", default=["logreg", "linear", "knn"])
    ap.add_argument("--sizes", nargs="*", default=["2%", "5%"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--weights", default="random")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "load_before": os.getloadavg()}
    common = dict(backbone="resnet18", weights=args.weights, epochs=args.epochs, image_size=args.image_size,
                  device="cpu", patience=args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        manifest = kaggle_manifest(DATA / "kaggle_cxr_224", args.images, args.seed, folder)
        cache = folder / "c.h5"
        t0 = time.perf_counter()
        run_extract(manifest, cache, backbones=["resnet18"], weights=args.weights, image_size=args.image_size,
                    device="cpu", seed=args.seed, views=args.views, tta=args.tta)
        out["extract_s"] = time.perf_counter() - t0
        print(f"extract --views {args.views} --tta {args.tta}, {args.images} images at {args.image_size} px: "
              f"{out['extract_s']:.0f} s", flush=True)
        picks, seconds = {}, {}
        for name, views, tta in (("plain head", "off", "off"), ("views", "on", "off"), ("views + TTA", "on", "on")):
            records = run_heads(cache, folder / "runs", heads=args.heads, sweep="quick", device="cpu", views=views,
                                tta=tta, progress=False)
            best = max(records, key=lambda r: r.metrics["val"]["auroc"])
            picks[name] = {**test_scores(best), "head": best.head}
            seconds[name] = sum(r.timing["train_seconds"] for r in records)
        t0 = time.perf_counter()
        ft = run_finetune(manifest, folder / "ft", **common, seed=args.seed, splits_from=cache)
        seconds["fine-tune"] = time.perf_counter() - t0
        picks["fine-tune"] = {**test_scores(ft), "head": f"{args.epochs} epochs"}
        print(f"\n100 % of the labels ({len(picks['plain head']['y'])} test images)")
        print("| setting | selected | test AUROC [95% CI] | seconds (sweep or fine-tune) |")
        print("|---|---|---|---|")
        for name, pick in picks.items():
            print(f"| {name} | {pick['head']} | {pick['auroc']:.3f} [{pick['ci'][0]:.3f}, {pick['ci'][1]:.3f}] | "
                  f"{seconds[name]:.1f} |")
        out["full"] = {n: {"head": p["head"], "auroc": p["auroc"], "ci": p["ci"], "seconds": seconds[n]}
                       for n, p in picks.items()}
        out["delong"] = {}
        print("\n| pair | AUROC diff [95% CI] | DeLong p |")
        print("|---|---|---|")
        for a, b in (("views", "plain head"), ("views + TTA", "plain head"), ("views + TTA", "views"),
                     ("fine-tune", "plain head"), ("fine-tune", "views + TTA")):
            pa, pb = picks[a], picks[b]
            assert pa["ids"] == pb["ids"], f"{a} and {b} were tested on different images"
            d = delong_test(pa["y"], pa["p"], pb["p"], groups=pa["groups"])
            out["delong"][f"{a} vs {b}"] = {k: d[k] for k in ("diff", "ci_diff", "p_value", "method")}
            print(f"| {a} vs {b} | {d['diff']:+.3f} [{d['ci_diff'][0]:+.3f}, {d['ci_diff'][1]:+.3f}] | "
                  f"{d['p_value']:.3f} ({d['method']}) |", flush=True)
        curves = run_curve(cache, folder / "curves", heads=args.heads, sizes=args.sizes, repeats=args.repeats,
                           device="cpu", views="on", n_boot=200, progress=False)
        small: dict = {}
        for size in args.sizes:
            for c in curves:
                entry = next(s for s in c.document["summary"] if s["size"] == size)
                label = f"{c.head}{' + views' if c.document['views'] == 'on' else ''}"
                small.setdefault(size, {})[label] = {"n_train": entry["n_train"], **entry["test"]["auroc"]}
            aurocs = []
            for r in range(args.repeats):
                rec = run_finetune(manifest, folder / "ft_small", **common, seed=args.seed + r, splits_from=cache,
                                   train_size=size, n_boot=200)
                aurocs.append(rec.metrics["test"]["auroc"])
            mean, sd, ci = mean_ci(aurocs)
            small[size]["fine-tune"] = {"mean": mean, "sd": sd, "ci": ci, "values": aurocs}
        print(f"\nSmall label budgets: mean test AUROC over {args.repeats} draws [t-interval]; the same draws for "
              f"every row (curve --views on, finetune --train-size)")
        print("| size | " + " | ".join(small[args.sizes[0]]) + " |")
        print("|---|" + "---|" * len(small[args.sizes[0]]))
        for size, row in small.items():
            n = next(v["n_train"] for v in row.values() if "n_train" in v)
            cells = [f"{v['mean']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}]" if v.get("ci") else f"{v['mean']:.3f}"
                     for v in row.values()]
            print(f"| {size} (~{n:.0f} images) | " + " | ".join(cells) + " |", flush=True)
        out["small"] = small
    out["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
