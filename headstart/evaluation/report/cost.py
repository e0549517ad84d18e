"""Cost against accuracy with measured numbers: one point per (backbone, strategy), and the Pareto front.

x is what the result cost in measured wall seconds: a cached head's one-time extraction plus its training (the
whole sweep), a fine-tune's training (every epoch's train and val pass). y is the test AUROC with its interval.
Each backbone's strategy is represented by its best configuration by the validation metric, as the paired tests
pick it; fine-tunes on a training draw (`--train-size`) belong to the learning curve, not here. GFLOPs per image
(multiply-adds at the backbone's default input size, as `headstart backbones` lists them) go in the label.
"""

from __future__ import annotations

import functools
import logging
import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from headstart.cache.schema import EXTERNAL
from headstart.evaluation.report.plots import to_png
from headstart.evaluation.report.summary import Row, all_finite, as_number, best_by_val, best_cached_head

logger = logging.getLogger(__name__)


def best_finetune(rows: list[Row], *, backbone: str | None, select_metric: str) -> Row | None:
    """The fine-tune row (of `backbone`, or of any) on all of train with the best mean validation metric."""
    candidates = [row for row in rows if row.strategy == "finetune" and not row.reference.config.get("train_size")
                  and (backbone is None or row.backbone == backbone)]
    return best_by_val(candidates, select_metric=select_metric)


def seconds_spent(row: Row) -> float:
    """Measured seconds behind a row's result: extraction + training for a cached head, training for a fine-tune."""
    train = row.mean_timing("train_seconds")
    if row.strategy == "finetune":
        return train
    return as_number(row.mean_timing("extract_seconds")) + train


def cost_points(rows: list[Row], *, select_metric: str) -> list[dict]:
    """One point per (backbone, strategy), with its seconds, test AUROC, interval and GFLOPs; Pareto-marked."""
    points = []
    for backbone in sorted({row.backbone for row in rows}):
        for row in (best_cached_head(rows, backbone=backbone, select_metric=select_metric),
                    best_finetune(rows, backbone=backbone, select_metric=select_metric)):
            if row is None:
                continue
            points.append({"backbone": backbone, "strategy": row.strategy, "label": row.label, "key": row.key,
                           "seconds": seconds_spent(row), "auroc": row.mean("test", "auroc"),
                           "auroc_ci": row.reference.metrics.get("test", {}).get("auroc_ci"),
                           "gflops": row_gflops(row)})
    front = pareto_front([(p["seconds"], p["auroc"]) for p in points])
    for i, point in enumerate(points):
        point["pareto"] = i in front
    return points


def pareto_front(points: list[tuple[float, float]]) -> set[int]:
    """Indices of the points no other point beats on both axes (fewer seconds and at least the AUROC, or vice versa)."""
    usable = [i for i, (x, y) in enumerate(points) if all_finite(x, y) and x > 0]
    front = set()
    for i in usable:
        xi, yi = points[i]
        if not any(points[j][0] <= xi and points[j][1] >= yi and points[j] != points[i] for j in usable):
            front.add(i)
    return front


def row_gflops(row: Row) -> float | None:
    """GFLOPs per image as the run's record says (extraction and fine-tuning stamp torchvision backbones' figure);
    only a record from before that is looked up, which imports torch (4 s of a report that needs no torch)."""
    config = row.reference.config
    if "gflops" in config:
        value = config["gflops"]
    elif config.get("weights") == EXTERNAL:  # features from `write_features`: no backbone to look up
        value = None
    else:
        value = gflops(row.backbone)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


@functools.lru_cache(maxsize=64)
def gflops(backbone: str) -> float | None:
    """GFLOPs per image from the backbone's offline metadata (torchvision names only), None when unknown."""
    if ":" in backbone:  # other providers build a model on the meta device to count; not worth it for a label
        return None
    try:
        from headstart.backbones.weights import torchvision_gflops

        return torchvision_gflops(backbone)
    except Exception as error:  # noqa: BLE001 - a label must never stop a report
        logger.debug("no GFLOPs for %s: %s", backbone, error)
        return None


def cost_figure(points: list[dict]) -> bytes | None:
    """Test AUROC against measured seconds (log x), intervals as error bars, the Pareto front as a step line."""
    drawable = [p for p in points if all_finite(p["seconds"], p["auroc"]) and p["seconds"] > 0]
    if not drawable:
        return None
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    for strategy, marker, color in (("cached-head", "o", "tab:blue"), ("finetune", "s", "tab:red")):
        mine = [p for p in drawable if p["strategy"] == strategy]
        if not mine:
            continue
        y = np.array([p["auroc"] for p in mine])
        err = np.array([[m - (p["auroc_ci"] or [m, m])[0], (p["auroc_ci"] or [m, m])[1] - m]
                        for p, m in zip(mine, y)]).T
        ax.errorbar([p["seconds"] for p in mine], y, yerr=np.clip(np.nan_to_num(err), 0, None), fmt=marker,
                    color=color, capsize=3, label="cached head (extract + train)" if strategy == "cached-head"
                    else "fine-tune (train)")
        for p in mine:
            flops = f"\n{p['gflops']:.2f} GFLOPs" if p["gflops"] is not None else ""
            ax.annotate(f"{p['backbone']} {p['label']}{flops}", (p["seconds"], p["auroc"]), fontsize=7,
                        xytext=(5, 4), textcoords="offset points")
    front = sorted((p for p in drawable if p["pareto"]), key=lambda p: p["seconds"])
    if front:
        ax.step([p["seconds"] for p in front], [p["auroc"] for p in front], where="post", color="grey",
                linestyle="--", linewidth=1, label="Pareto front")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on a short log axis
    ax.margins(x=0.25)  # room for the labels right of the costliest point
    ax.set_xlabel("measured seconds (extraction + training; log scale)")
    ax.set_ylabel("test AUROC (95% interval)")
    ax.set_title("Cost against accuracy: best configuration per backbone and strategy")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    return to_png(fig)
