"""The report's figures, rendered to PNG bytes.

Figures are built as `matplotlib.figure.Figure` objects drawn by the Agg canvas directly, never through pyplot:
no GUI backend is ever selected (headless servers, CI), and no global figure state leaks between calls.
"""

from __future__ import annotations

import io
import math

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from headstart.evaluation.report.summary import as_number
from headstart.evaluation.thresholds import roc_points

DPI = 110  # sharp enough on screen, small enough to embed several figures in one HTML file
LOG_SCALE_RATIO = 50.0  # timing bars switch to a log axis when the largest bar is this many times the smallest


def to_png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def roc_figure(curves: list[tuple[str, np.ndarray, np.ndarray]], *, title: str) -> bytes | None:
    """Test ROC curves, one per (label, y_true, positive-class probability); None when none is drawable."""
    drawable = [(label, y, p) for label, y, p in curves if np.unique(y).size == 2]
    if not drawable:
        return None
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    for label, y, p in drawable:
        fpr, tpr = roc_points(y, p)
        ax.plot(fpr, tpr, label=label, linewidth=1.4)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_title(title)
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="lower right")
    return to_png(fig)


def confusion_figure(panels: list[tuple[str, np.ndarray]], *, classes: list[str]) -> bytes | None:
    """One confusion-matrix panel per (title, counts), rows true class, columns predicted class."""
    panels = [(title, np.asarray(cm)) for title, cm in panels if cm is not None and np.asarray(cm).ndim == 2]
    if not panels:
        return None
    n_cols = min(4, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    fig = Figure(figsize=(3.2 * n_cols, 3.1 * n_rows))
    axes = np.atleast_1d(fig.subplots(n_rows, n_cols)).ravel()
    for ax, (title, cm) in zip(axes, panels):
        ax.imshow(cm, cmap="Blues")
        names = classes if len(classes) == cm.shape[0] else [str(i) for i in range(cm.shape[0])]
        ax.set_xticks(range(cm.shape[1]), names, rotation=30, fontsize=7)
        ax.set_yticks(range(cm.shape[0]), names, fontsize=7)
        for (i, j), count in np.ndenumerate(cm):
            ax.text(j, i, str(int(count)), ha="center", va="center",
                    color="white" if count > cm.max() / 2 else "black", fontsize=9)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        ax.set_title(title, fontsize=8)
    for ax in axes[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return to_png(fig)


def timing_figure(bars: list[tuple[str, dict[str, float]]]) -> bytes | None:
    """Grouped bars of extract / train / eval seconds per row; log axis when the spread is large."""
    stages = ("extract_seconds", "train_seconds", "eval_seconds")
    values = np.array([[as_number(timing.get(stage)) for stage in stages] for _, timing in bars], dtype=np.float64)
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size == 0:
        return None
    fig = Figure(figsize=(max(6.0, 0.9 * len(bars) + 2), 4))
    ax = fig.subplots()
    x = np.arange(len(bars))
    width = 0.27
    for k, stage in enumerate(stages):
        heights = np.nan_to_num(values[:, k], nan=0.0)
        ax.bar(x + (k - 1) * width, heights, width, label=stage.replace("_seconds", ""))
    ax.set_xticks(x, [label for label, _ in bars], rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("seconds")
    if positive.max() / positive.min() > LOG_SCALE_RATIO:
        ax.set_yscale("log")
        ax.set_ylabel("seconds (log scale)")
    ax.set_title("wall time per run (seed mean)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return to_png(fig)



def heatmap_figure(values: np.ndarray, *, rows: list[str], columns: list[str], title: str) -> bytes | None:
    """A (runs x findings) grid of AUROC, each cell annotated; NaN cells grey and marked n/a."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or not np.isfinite(values).any():
        return None
    fig = Figure(figsize=(max(5.0, 0.65 * len(columns) + 2.5), max(2.2, 0.45 * len(rows) + 1.6)))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#d9d9d9")
    finite = values[np.isfinite(values)]
    low, high = min(0.5, float(finite.min())), max(float(finite.max()), 0.51)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=low, vmax=high, aspect="auto")
    for (i, j), value in np.ndenumerate(values):
        text = "n/a" if not np.isfinite(value) else f"{value:.2f}"
        light = np.isfinite(value) and value < low + 0.5 * (high - low)
        ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if light else "black")
    ax.set_xticks(range(len(columns)), columns, rotation=40, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02).set_label("AUROC", fontsize=8)
    return to_png(fig)


def roc_grid_figure(panels: list[tuple[str, np.ndarray, np.ndarray]], *, title: str) -> bytes | None:
    """ROC small multiples, one panel per (finding, y_true, score); a one-class finding's panel says n/a."""
    if not panels:
        return None
    n_cols = min(4, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    fig = Figure(figsize=(2.6 * n_cols, 2.6 * n_rows + 0.4))
    axes = np.atleast_1d(fig.subplots(n_rows, n_cols, squeeze=False)).ravel()
    for ax, (name, y, p) in zip(axes, panels):
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
        if np.unique(y).size == 2:
            fpr, tpr = roc_points(y, p)
            ax.plot(fpr, tpr, linewidth=1.3)
        else:
            ax.text(0.5, 0.5, "n/a (one class)", ha="center", va="center", fontsize=8)
        ax.set_title(name, fontsize=8)
        ax.set_xlim(-0.02, 1.02)  # a perfect curve runs along the edges: keep it visible
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=6)
    for ax in axes[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return to_png(fig)
