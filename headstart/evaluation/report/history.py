"""Training histories as one grid per backbone: a row per configuration, train against val loss and accuracy.

Each row of the grid is a configuration's lowest-seed run (the one whose intervals the tables show), so a sweep
over seeds adds no rows; cached heads without epochs (logreg, kNN) have no history and no row.
"""

from __future__ import annotations

import math

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from headstart.evaluation.report.plots import to_png
from headstart.evaluation.report.summary import Row, as_number

MAX_ROWS = 8  # more configurations than this per backbone would make an unreadable figure; the rest are listed


def epochs_of(row: Row) -> list[dict]:
    return [entry for entry in row.reference.history if isinstance(entry, dict) and "epoch" in entry]


def history_grid(backbone: str, rows: list[Row]) -> tuple[bytes | None, list[str]]:
    """(PNG, labels of the configurations left out) for one backbone; None when no configuration has epochs."""
    with_history = [row for row in rows if row.backbone == backbone and epochs_of(row)]
    if not with_history:
        return None, []
    shown, left_out = with_history[:MAX_ROWS], [row.label for row in with_history[MAX_ROWS:]]
    fig = Figure(figsize=(9, 2.6 * len(shown) + 0.6), layout="constrained")
    axes = fig.subplots(len(shown), 2, squeeze=False)
    for (loss_ax, acc_ax), row in zip(axes, shown):
        history = epochs_of(row)
        epochs = [entry["epoch"] for entry in history]
        for ax, quantity in ((loss_ax, "loss"), (acc_ax, "accuracy")):
            for split, style in (("train", "o-"), ("val", "s--")):
                values = [as_number(entry.get(f"{split}_{quantity}")) for entry in history]
                if not all(math.isnan(v) for v in values):
                    ax.plot(epochs, values, style, label=split, markersize=3)
            ax.set_title(f"{row.label}: {quantity}", fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=7)
    fig.suptitle(f"{backbone}: train vs val per epoch (lowest-seed run of each configuration)", fontsize=10)
    return to_png(fig), left_out
