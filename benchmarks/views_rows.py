"""logreg and kNN with cached views: the view mean (one row per image) against the views as extra rows.

`heads --views on` gives logistic regression and kNN either each image's mean over its plain and K augmented
views, or its K + 1 views as rows of their own (sharing the image's id and patient, so cross-validation folds
and carved hold-outs keep them together). `heads.views.VIEW_ROWS` holds the default; this script measures both
on a cache made by `extract --views K` (benchmarks/views.py --keep DIR leaves one on real Kaggle images), and
prints, per head and mode: the sweep's train seconds (median of --repeats rounds, modes alternating), the test
AUROC of the config selected on val, and a paired DeLong test of rows against mean (patient-clustered where
groups are known). The plain head (--views off) is printed beside them for reference.

    PYTHONPATH=. .venv/bin/python benchmarks/views_rows.py CACHE [--repeats 3] [--sweep default] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from headstart.api import run_heads
from headstart.evaluation.paired import delong_test
from headstart.heads import views as view_rows


def one(cache: Path, out: Path, head: str, mode: str | None, sweep: str) -> dict:
    """One sweep of `head`; mode None is the plain head (--views off)."""
    if mode is not None:
        view_rows.VIEW_ROWS[head] = mode
    [record] = run_heads(cache, out, heads=[head], sweep=sweep, device="cpu", views="off" if mode is None else "on",
                         progress=False)
    test = record.predictions["test"]
    return {"seconds": record.timing["train_seconds"], "auroc": record.metrics["test"]["auroc"],
            "auroc_ci": record.metrics["test"]["auroc_ci"], "ids": list(test["ids"]),
            "y": np.asarray(test["y_true"]), "p": np.asarray(test["proba"])[:, 1], "groups": test.get("groups")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cache", type=Path)
    ap.add_argument("--heads", nargs="*", default=["logreg", "knn"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sweep", default="default")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    default = dict(view_rows.VIEW_ROWS)
    modes: list[str | None] = [None, "mean", "rows"]
    out: dict = {"cache": str(args.cache), "load_before": os.getloadavg(), "heads": {}}
    print("| head | rows per train image | train s (median) | test AUROC [95% CI] | vs mean: diff [95% CI], p |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for head in args.heads:
            runs: dict = {m: [] for m in modes}
            for r in range(args.repeats):
                for mode in modes[r % 3:] + modes[:r % 3]:
                    runs[mode].append(one(args.cache, Path(tmp) / f"{head}-{mode}-{r}", head, mode, args.sweep))
            view_rows.VIEW_ROWS.update(default)
            res = {}
            for mode in modes:
                last = runs[mode][-1]  # every round fits the same data: the AUROC is the same, the time varies
                assert all(abs(x["auroc"] - last["auroc"]) < 1e-9 for x in runs[mode]), "a sweep is not deterministic"
                res[mode] = {"seconds": [x["seconds"] for x in runs[mode]], "auroc": last["auroc"],
                             "auroc_ci": last["auroc_ci"]}
                versus = ""
                if mode == "rows":
                    ref = runs["mean"][-1]
                    assert ref["ids"] == last["ids"]
                    d = delong_test(last["y"], last["p"], ref["p"], groups=last["groups"])
                    res[mode]["delong_vs_mean"] = d
                    versus = f"{d['diff']:+.3f} [{d['ci_diff'][0]:+.3f}, {d['ci_diff'][1]:+.3f}], p = {d['p_value']:.2f}"
                label = {None: "plain (--views off)", "mean": "view mean", "rows": "K + 1 rows"}[mode]
                print(f"| {head} | {label} | {np.median(res[mode]['seconds']):.2f} | {last['auroc']:.3f} "
                      f"[{last['auroc_ci'][0]:.3f}, {last['auroc_ci'][1]:.3f}] | {versus} |", flush=True)
            out["heads"][head] = {str(k): v for k, v in res.items()}
    out["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
