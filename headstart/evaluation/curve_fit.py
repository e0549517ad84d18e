"""The learning curve's statistics: the interval over repeats, and the power law `metric(n) = a - b * n^(-c)`
fitted with bounds, with what it answers.

Pure: numbers in, a JSON-ready dict (or None with a reason) out. Weighted by each size's standard error, so the
well-measured sizes (many labels, many repeats) decide the plateau rather than the noisy few-label ones. Bounded for metrics on [0, 1] where larger is
better (AUROC, accuracy, ...): a <= 1 (the plateau), b >= 0 (more labels never hurt on average), c > 0. A
grid over c with a linear least-squares solve for (a, b) at each value gives the start, so the bounded
trust-region refinement starts near the optimum even on a noisy curve; a noisy curve still gets its fit.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence

import numpy as np

from headstart.evaluation import FIT_METRICS  # noqa: F401  (re-exported: the fit's own callers import it here)

log = logging.getLogger(__name__)

MIN_SIZES = 4  # three parameters: at least one point more than the law has
C_BOUNDS = (1e-3, 5.0)  # exponents outside this never describe a measured learning curve
PLATEAU_FRACTIONS = (0.95, 0.99)  # labels to reach these fractions of the plateau are reported
SIGMA_FLOOR = 0.002  # smallest standard error a size's mean is trusted with (AUROC units)


def power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a - b * np.power(n, -c)


def fit_power_law(n: Sequence[float], y: Sequence[float], *, sigma: Sequence[float] | None = None,
                  target: float | None = None, upper: float = 1.0) -> tuple[dict | None, str | None]:
    """(fit, None), or (None, reason) with fewer than MIN_SIZES usable sizes or when the optimiser fails.

    `n` are the sizes' mean realised train counts, `y` the test metric's repeat means, `sigma` their standard
    errors (weights: a mean over repeats of a few labels is noisier than one over many; floored at SIGMA_FLOOR
    so that a size whose repeats happen to agree does not pin the curve). `upper` bounds the plateau (1 for
    AUROC). The fit holds a, b, c, `plateau` (= a), `labels_95` / `labels_99` (labels at which the law reaches
    that fraction of the plateau), `labels_target` with `target`, the fit's rmse and the measured range, so a
    reader sees when an answer is an extrapolation.
    """
    n = np.asarray(n, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    s = np.ones_like(y) if sigma is None else np.asarray(sigma, dtype=np.float64)
    s = np.maximum(np.where(np.isfinite(s), s, np.nanmax(s, initial=SIGMA_FLOOR)), SIGMA_FLOOR)
    keep = np.isfinite(n) & np.isfinite(y) & (n > 0)
    n, y, s = n[keep], y[keep], s[keep]
    if len(np.unique(n)) < MIN_SIZES:
        return None, f"{len(np.unique(n))} usable sizes; a power-law fit needs at least {MIN_SIZES}"
    try:
        a, b, c = _refine(n, y, s, _grid_start(n, y, s, upper=upper), upper=upper)
    except (RuntimeError, ValueError) as error:
        return None, f"the optimiser failed: {error}"
    if not all(math.isfinite(v) for v in (a, b, c)):
        return None, "the optimiser returned non-finite parameters"
    fit = {
        "form": "a - b * n^(-c)", "a": a, "b": b, "c": c, "plateau": a,
        "rmse": float(np.sqrt(np.mean((power_law(n, a, b, c) - y) ** 2))),
        "n_min": float(n.min()), "n_max": float(n.max()), "n_sizes": int(len(n)),
    }
    for q in PLATEAU_FRACTIONS:
        fit[f"labels_{round(q * 100)}"] = labels_for(q * a, a=a, b=b, c=c, n_min=n.min())
    fit["target"] = target
    fit["labels_target"] = None if target is None else labels_for(target, a=a, b=b, c=c, n_min=n.min())
    return fit, None


def labels_for(value: float, *, a: float, b: float, c: float, n_min: float) -> float | None:
    """Labels at which the law reaches `value`: solved from a - b n^-c = value; None when it never does.

    A flat law (b = 0) is at its plateau from the first measured size, so that size is the answer.
    """
    if value >= a:
        return None if value > a or b > 0 else float(n_min)
    if b <= 0:
        return float(n_min)
    return float((b / (a - value)) ** (1.0 / c))


def _grid_start(n: np.ndarray, y: np.ndarray, s: np.ndarray, *, upper: float) -> tuple[float, float, float]:
    """The best (a, b, c) over a grid of c, each with (a, b) solved by clipped weighted linear least squares."""
    best, best_sse = (float(min(y.max(), upper)), 0.0, 0.5), math.inf
    for c in np.geomspace(0.02, 3.0, 60):
        design = np.stack([np.ones_like(n), -np.power(n, -c)], axis=1)
        (a, b), *_ = np.linalg.lstsq(design / s[:, None], y / s, rcond=None)
        a, b = min(float(a), upper), max(float(b), 0.0)
        sse = float(np.sum(((power_law(n, a, b, c) - y) / s) ** 2))
        if sse < best_sse:
            best, best_sse = (a, b, float(c)), sse
    return best


def _refine(n: np.ndarray, y: np.ndarray, s: np.ndarray, start: tuple[float, float, float], *,
            upper: float) -> tuple[float, float, float]:
    from scipy.optimize import curve_fit

    lower_bounds = (-np.inf, 0.0, C_BOUNDS[0])
    upper_bounds = (upper, np.inf, C_BOUNDS[1])
    p0 = [min(max(v, lo + 1e-9), hi - 1e-9) for v, lo, hi in zip(start, lower_bounds, upper_bounds)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # covariance warnings on exact or tiny data; the fit itself is what counts
        params, _ = curve_fit(power_law, n, y, p0=p0, sigma=s, bounds=(lower_bounds, upper_bounds), method="trf",
                              maxfev=20000)
    return tuple(float(p) for p in params)  # type: ignore[return-value]


def mean_ci(values: list, *, level: float = 0.95) -> tuple[float, float, list[float] | None]:
    """Mean, sample sd and the t-interval of the mean, clipped to [0, 1] (None with fewer than two finite values)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan, None
    if x.size == 1:
        return float(x[0]), math.nan, None
    from scipy.stats import t

    sd = float(x.std(ddof=1))
    half = float(t.ppf(0.5 + level / 2, x.size - 1)) * sd / math.sqrt(x.size)
    # every summary metric lives on [0, 1]: an interval past either end says nothing more than the end itself
    return float(x.mean()), sd, [max(0.0, float(x.mean() - half)), min(1.0, float(x.mean() + half))]


def standard_error(entry: dict) -> float:
    """The standard error of a summary entry's mean: sd / sqrt(repeats), or for one draw its bootstrap interval's
    half-width / 1.96; NaN when neither is known."""
    if entry["repeats"] > 1 and math.isfinite(entry.get("sd", math.nan)):
        return entry["sd"] / math.sqrt(entry["repeats"])
    ci = entry.get("ci")
    if ci and all(v is not None and math.isfinite(v) for v in ci):
        return (ci[1] - ci[0]) / (2 * 1.96)
    return math.nan
