"""Compact console tables and number formats shared by `heads`, `finetune` and `compare` output."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MISSING = "-"  # shown for None and NaN, so an undefined metric never reads as a number


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def fmt_value(value: object, *, digits: int = 3) -> str:
    """A number with `digits` decimals (integers as they are), text as is, None/NaN as '-'."""
    if _is_missing(value):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{digits}f}"
    return str(value)


def fmt_ci(value: float | None, ci: Sequence[float | None] | None, *, digits: int = 3) -> str:
    """`0.912 [0.887, 0.935]`; the interval is left out when absent or undefined."""
    text = fmt_value(value, digits=digits)
    if ci is None or len(ci) != 2 or any(_is_missing(bound) for bound in ci):
        return text
    return f"{text} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def fmt_mean_std(mean: float | None, std: float | None, *, digits: int = 3) -> str:
    """`0.912 ± 0.004`; the ± part is left out for a single seed (std NaN)."""
    text = fmt_value(mean, digits=digits)
    if _is_missing(std) or text == MISSING:
        return text
    return f"{text} ± {std:.{digits}f}"


def fmt_mean_std_ci(mean: float | None, std: float | None, ci: Sequence[float | None] | None, *,
                    digits: int = 3) -> str:
    """`0.912 ± 0.004 [0.887, 0.935]`: `fmt_mean_std` plus the interval when it is defined."""
    text = fmt_mean_std(mean, std, digits=digits)
    if text == MISSING or ci is None or len(ci) != 2 or any(_is_missing(bound) for bound in ci):
        return text
    return f"{text} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def fmt_p(value: object) -> str:
    """A p-value with three decimals, `< 0.001` below that, '-' when missing."""
    if _is_missing(value) or not isinstance(value, (int, float, np.number)):
        return MISSING
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def fmt_seconds(value: object) -> str:
    """Seconds with precision that suits the size: 0.0123, 4.56, 789; '-' when missing."""
    if _is_missing(value) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
        return MISSING
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def aggregate_seeds(values: Sequence[float | None]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) over seeds, ignoring NaN; std is NaN with fewer than 2."""
    finite = np.array([v for v in values if not _is_missing(v)], dtype=np.float64)
    if finite.size == 0:
        return float("nan"), float("nan")
    std = float(finite.std(ddof=1)) if finite.size > 1 else float("nan")
    return float(finite.mean()), std


def format_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """An aligned plain-text table: `columns` is (row key, header); numbers right-aligned, text left-aligned.

    Values that are already strings (e.g. from fmt_ci) are printed as given; numbers get 3 decimals.
    """
    cells = [[fmt_value(row.get(key)) for key, _ in columns] for row in rows]
    numeric = [
        all(_is_missing(row.get(key)) or isinstance(row.get(key), (int, float, np.number)) for row in rows)
        or all(_looks_numeric(line[i]) for line in cells)
        for i, (key, _) in enumerate(columns)
    ]
    headers = [header for _, header in columns]
    widths = [max([len(header)] + [len(line[i]) for line in cells]) for i, header in enumerate(headers)]

    def render(line: list[str]) -> str:
        parts = [text.rjust(width) if right else text.ljust(width) for text, width, right in zip(line, widths, numeric)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([render(headers), rule] + [render(line) for line in cells])


def _looks_numeric(text: str) -> bool:
    """True for formatted numbers such as '0.912 [0.887, 0.935]' or '-', so they align right too."""
    head = text.split(" ", 1)[0]
    if head == MISSING:
        return True
    try:
        float(head)
    except ValueError:
        return False
    return True
