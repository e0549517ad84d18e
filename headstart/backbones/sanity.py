"""Sanity checks on extracted features and on what the backbone was fed: pure functions and a streaming tally.

The failures they catch produce a cache that looks fine and trains heads to chance: a backbone whose outputs
do not depend on the image (collapsed embeddings: every row alike, or most dimensions constant), NaN/Inf rows,
and inputs on another scale than the model expects (a torchxrayvision model fed [0, 1] images instead of
[-1024, 1024], the cause behind its "identical outputs" reports). Each check returns one-line warnings; the
extraction records them as feature-set attributes and logs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

COLLAPSE_RELATIVE_VARIANCE = 1e-6  # total variance / mean squared norm below this: the rows are one point
CONSTANT_DIM_RELATIVE_VARIANCE = 1e-10  # a dim whose variance is below this x the mean squared norm is constant
CONSTANT_DIMS_FRACTION = 0.5  # warn when at least half of the dims are constant
RANGE_SPAN_FRACTION = 0.05  # inputs spanning under 5% of the expected range: fed on the wrong scale
RANGE_OVERSHOOT_FRACTION = 0.25  # inputs beyond the expected range by more than 25% of its width


@dataclass
class EmbeddingStats:
    """Running per-dimension mean and variance (Chan's parallel update), NaN/Inf rows, over batches of features."""

    count: int = 0
    nonfinite_rows: int = 0
    mean: np.ndarray | None = None  # (D,) float64
    m2: np.ndarray | None = None  # (D,) sum of squared deviations
    sq_norm_sum: float = 0.0  # of the finite rows, for a scale-free variance
    _dims: int = field(default=0, repr=False)

    def update(self, features) -> EmbeddingStats:
        """Add a (B, D) batch (numpy or torch); rows holding NaN/Inf are counted, not folded into the moments."""
        x = np.asarray(features.detach().float().cpu() if hasattr(features, "detach") else features, np.float64)
        finite = np.isfinite(x).all(axis=1)
        x = x[finite]
        batch = EmbeddingStats(nonfinite_rows=int((~finite).sum()))
        if len(x):
            batch_mean = x.mean(axis=0)
            batch.count, batch.mean, batch._dims = len(x), batch_mean, x.shape[1]
            batch.m2, batch.sq_norm_sum = ((x - batch_mean) ** 2).sum(axis=0), float((x**2).sum())
        return self.merge(batch)

    def merge(self, other: EmbeddingStats) -> EmbeddingStats:
        """Fold in the tally of other rows (another batch, or another torchrun rank's share)."""
        self.nonfinite_rows += other.nonfinite_rows
        if other.mean is None:
            return self
        if self.mean is None:
            self.mean, self.m2, self._dims = other.mean.copy(), other.m2.copy(), other._dims
        else:
            delta, total = other.mean - self.mean, self.count + other.count
            self.mean = self.mean + delta * other.count / total
            self.m2 = self.m2 + other.m2 + delta**2 * self.count * other.count / total
        self.count += other.count
        self.sq_norm_sum += other.sq_norm_sum
        return self

    def summary(self) -> dict:
        """Numbers worth keeping as attributes: rows, NaN/Inf rows, relative variance, constant dims."""
        if self.count < 2:
            return {"rows": self.count, "nonfinite_rows": self.nonfinite_rows, "relative_variance": None,
                    "constant_dims": None}
        variance = self.m2 / self.count
        scale = self.sq_norm_sum / self.count + 1e-30  # mean squared row norm
        return {"rows": self.count, "nonfinite_rows": self.nonfinite_rows,
                "relative_variance": float(variance.sum() / scale),
                "constant_dims": int((variance <= CONSTANT_DIM_RELATIVE_VARIANCE * scale).sum())}

    def warnings(self, name: str) -> list[str]:
        return embedding_warnings(self.summary(), name=name, dims=self._dims)


def embedding_warnings(summary: dict, *, name: str, dims: int) -> list[str]:
    """One-line warnings from an `EmbeddingStats.summary()`; empty when the features look usable."""
    out = []
    total = summary["rows"] + summary["nonfinite_rows"]
    if summary["nonfinite_rows"]:
        out.append(f"{name}: {summary['nonfinite_rows']} of {total} feature rows hold NaN or Inf; try --precision "
                   "fp32, and check the weights")
    variance, constant = summary["relative_variance"], summary["constant_dims"]
    if variance is not None and variance < COLLAPSE_RELATIVE_VARIANCE:
        out.append(f"{name}: all {summary['rows']} feature rows are nearly identical (relative variance "
                   f"{variance:.1e}); the backbone ignores its input: check the weights and the input range")
    elif constant is not None and dims and constant >= CONSTANT_DIMS_FRACTION * dims:
        out.append(f"{name}: {constant} of {dims} feature dims are constant over {summary['rows']} images; "
                   "the features have collapsed: check the weights and the input range")
    return out


def input_range_warnings(observed: tuple[float, float], expected: tuple[float, float], *, name: str) -> list[str]:
    """Warn when what the backbone was fed does not look like its expected value range.

    `observed` is (min, max) of the normalised input batch; `expected` is `Preprocessing.value_range`.
    """
    lo, hi = expected
    width = hi - lo
    seen_lo, seen_hi = observed
    if not np.isfinite([seen_lo, seen_hi]).all():
        return [f"{name}: its input holds NaN or Inf; check the images and the preprocessing"]
    feeds = f"was fed values in [{seen_lo:.3g}, {seen_hi:.3g}] but expects [{lo:.3g}, {hi:.3g}]"
    if seen_lo < lo - RANGE_OVERSHOOT_FRACTION * width or seen_hi > hi + RANGE_OVERSHOOT_FRACTION * width:
        return [f"{name}: {feeds}; the images were scaled for another model"]
    if seen_hi - seen_lo < RANGE_SPAN_FRACTION * width and seen_hi > seen_lo:
        return [f"{name}: {feeds}, a sliver of it; the images were scaled for another model "
                "(e.g. [0, 1] into a torchxrayvision model)"]
    return []
