"""What every audit check returns: a flag, one line for the terminal, and JSON-able details."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class CheckResult:
    """One check's outcome. `skipped` says why it could not run (old cache, one split, one class); a skipped check
    is never flagged."""

    name: str  # the JSON key: metadata_baseline, near_duplicates, ...
    flagged: bool
    message: str  # one line, shown in the terminal and the report
    data: dict = field(default_factory=dict)  # JSON-able details (the documented fields of this check)
    skipped: str | None = None

    def line(self) -> str:
        mark = "SKIP" if self.skipped else ("FLAG" if self.flagged else "ok")
        return f"[{mark:>4}] {self.name}: {self.message}"

    def to_json(self) -> dict:
        return {"flagged": self.flagged, "skipped": self.skipped, "message": self.message, **jsonable(self.data)}


def skipped(name: str, why: str, **data) -> CheckResult:
    """A check that could not run: `why` is the one line (what is missing and what would provide it)."""
    return CheckResult(name=name, flagged=False, message=f"skipped: {why}", data=data, skipped=why)


def jsonable(value):
    """numpy scalars/arrays -> Python; NaN/inf -> None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def fmt_counts(counts: dict) -> str:
    """'train-test 3, val-test 1' (keys sorted)."""
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def fmt_ci(value: float, ci) -> str:
    """'0.91 [0.88, 0.94]'."""
    return f"{value:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"
