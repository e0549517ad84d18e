"""The training subsample of a label-efficiency study: whole patients, stratified by class, seeded.

One function, `draw_subsample`, serves `headstart curve` (every size x repeat of its ladder) and
`headstart finetune --train-size` alike, so both strategies see the same images at each size and seed.

- **Grouped.** Whole patients are drawn: one patient's images never sit on both sides of a draw, so the
  effective n is honest (a patient's second radiograph is not a new labelled case). Ungrouped images
  (group "") are patients of their own (`data.sampling`, the sampler every subset goes through).
- **Stratified.** Each class has its own target (k per class, or the class's share of a count or a
  fraction). A seeded pass over the patients in random order takes a patient whenever every class it holds
  is still short of its target, so a draw overshoots only by the rest of its last patient: `n_train` varies a
  little around the nominal size.
- **Order-free.** Patients are sorted by key and each keeps its images, so the draw depends on the ids,
  labels, groups, size and seed only, never on the order rows come in (a cache's row order vs a data
  folder's): `curve` on a cache and `finetune` on the images draw the same ids.
- **Pure.** It returns a `Draw` naming any class it could not include; callers decide (curve skips the point
  with a note, finetune refuses).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from headstart.data.sampling import Units, strata_counts, take_short, unit_keys
from headstart.errors import ConfigError, DataError

if TYPE_CHECKING:
    from headstart.data.types import Sample

_DRAW_STREAM = 11  # salt of the draw's random stream, so it never coincides with the split carve's streams
_SIZE_RE = re.compile(r"^\s*(?:(?P<k>k\s*=\s*\d+)|(?P<pct>\d+(?:\.\d+)?\s*%)|(?P<n>\d+))\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class SizeSpec:
    """A nominal training-set size: `k` images per class, a `count` of images, or a `fraction` of train."""

    kind: str  # "per_class" | "count" | "fraction"
    value: float  # k, the count, or the fraction in (0, 1]

    @property
    def label(self) -> str:
        """The nominal value as curve.json and the report show it: "k=4", "200" or "10%"."""
        if self.kind == "per_class":
            return f"k={int(self.value)}"
        if self.kind == "fraction":
            return f"{self.value * 100:g}%"
        return str(int(self.value))

    @property
    def slug(self) -> str:
        """The label in run-id characters: "k4", "n200", "10pct"."""
        if self.kind == "per_class":
            return f"k{int(self.value)}"
        if self.kind == "fraction":
            return f"{self.value * 100:g}pct".replace(".", "p")
        return f"n{int(self.value)}"

    @property
    def full(self) -> bool:
        """The whole train split: one draw, the same for every seed."""
        return self.kind == "fraction" and self.value >= 1.0

    def targets(self, class_counts: np.ndarray, n_rows: int | None = None) -> np.ndarray:
        """Images wanted per class, given the pool's count per class (classes absent from the pool want 0).
        `n_rows`: the pool's images where they are fewer than the counts' sum (a multi-label pool, whose
        images count once per finding they show)."""
        counts = np.asarray(class_counts, dtype=np.float64)
        if self.kind == "per_class":
            wanted = np.full(counts.shape, self.value)
        elif self.kind == "fraction":
            wanted = self.value * counts
        else:
            wanted = self.value * counts / max(float(n_rows or counts.sum()), 1.0)
        return np.minimum(np.floor(wanted + 0.5), counts).astype(np.int64)  # round half up, never above the pool


def parse_size(text: str | float | int) -> SizeSpec:
    """"k=4" (images per class), "200" (images), "10%" or 0.1 (a fraction of train) -> SizeSpec.

    A Python float is a fraction in (0, 1], as `--train-fraction` gives it; anything else is a ConfigError.
    """
    if isinstance(text, float):
        return _checked(SizeSpec("fraction", text), text)
    match = _SIZE_RE.match(str(text))
    if not match:
        raise ConfigError(f"training-set size {text!r} is not understood; expected k=N (images per class), a number "
                          f"of images such as 200, or a percentage of train such as 10%")
    if match.group("k"):
        return _checked(SizeSpec("per_class", float(match.group("k").split("=")[1])), text)
    if match.group("pct"):
        return _checked(SizeSpec("fraction", float(match.group("pct").rstrip("% ")) / 100.0), text)
    return _checked(SizeSpec("count", float(match.group("n"))), text)


def _checked(spec: SizeSpec, text: object) -> SizeSpec:
    if spec.kind == "fraction" and not 0.0 < spec.value <= 1.0:
        raise ConfigError(f"training-set size {text!r} is not a fraction of train in (0%, 100%]; expected e.g. 10%")
    if spec.kind != "fraction" and spec.value < 1:
        raise ConfigError(f"training-set size {text!r} asks for no images; expected at least 1 (k=1, or 1 image)")
    return spec


@dataclass(frozen=True)
class Draw:
    """One subsample of a pool of rows: positions into the arrays the pool was given as, ascending."""

    index: np.ndarray  # int64 positions of the drawn rows in the caller's arrays
    seed: int  # the draw's seed (recorded: with the same pool and size, it reproduces the draw)
    size: SizeSpec  # the nominal size asked for
    per_class: tuple[int, ...]  # drawn images per class index
    n_patients: int  # distinct patients drawn (an ungrouped image counts as one)
    pool_per_class: tuple[int, ...] = ()  # images per class in the pool drawn from

    @property
    def n(self) -> int:
        return int(self.index.size)

    @property
    def missing(self) -> tuple[int, ...]:
        """Class indices of the pool the draw holds no image of (a size too small for one of each)."""
        return tuple(i for i, (n, have) in enumerate(zip(self.per_class, self.pool_per_class)) if have and not n)

    def describe(self) -> dict:
        """What a record or curve point carries about the draw."""
        return {"size": self.size.label, "n_train": self.n, "n_patients": self.n_patients,
                "per_class": list(self.per_class), "seed": self.seed}


def draw_subsample(ids: Sequence[str], labels: Sequence[int], groups: Sequence[str], size: SizeSpec, *,
                   seed: int, n_classes: int | None = None) -> Draw:
    """Draw whole patients from the pool (ids, labels, groups) to about `size` images, stratified by class.

    `labels` is (N,) class indices, or a multi-label (N, L) 0/1 matrix of known positives: then each finding's
    positives are a stratum (rows with none a stratum of their own, column L; data.sampling.strata_counts) and
    `per_class` counts positives per finding. `n_classes` fixes the length of `per_class` (default: the largest
    label + 1). A class of the pool that the draw could not include shows in `Draw.missing`; the caller decides
    what that means.
    """
    ids = np.asarray([str(i) for i in ids], dtype=object)
    labels = np.asarray(labels, dtype=np.int64)
    groups = np.asarray(["" if g is None else str(g) for g in groups], dtype=object)
    if not (len(ids) == len(labels) == len(groups)):
        raise ValueError(f"pool arrays differ in length: {len(ids)} ids, {len(labels)} labels, {len(groups)} groups")
    if labels.ndim == 2:
        row_counts = strata_counts(labels)[0]
        n_classes = row_counts.shape[1]
        pool_counts = row_counts.sum(axis=0)
    else:
        n_classes = int(n_classes if n_classes is not None else (labels.max() + 1 if labels.size else 0))
        pool_counts = np.bincount(labels, minlength=n_classes)
    if size.full:
        chosen = np.arange(len(ids))
    else:  # each class column's target; the sampler's columns are the classes present in the pool
        units = Units.build(ids, groups, labels)
        target = size.targets(pool_counts, len(ids))[units.strata.astype(np.int64)]
        chosen = units.rows(take_short(units, target, seed=(int(seed), _DRAW_STREAM)))
    drawn = row_counts[chosen].sum(axis=0) if labels.ndim == 2 else np.bincount(labels[chosen], minlength=n_classes)
    return Draw(index=np.sort(chosen).astype(np.int64), seed=int(seed), size=size,
                per_class=tuple(int(n) for n in drawn),
                n_patients=len(set(unit_keys(ids[chosen], groups[chosen]).tolist())),
                pool_per_class=tuple(int(n) for n in pool_counts))


def ladder(n_train: int, n_classes: int, *, fractions: Sequence[float] = (0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
           ) -> list[SizeSpec]:
    """The default ladder: k = 1, 2, 4, ... images per class while k x classes stays below the smallest fraction
    of train, then the fractions of train (ending with the whole split)."""
    smallest = min(fractions) * n_train
    sizes = []
    k = 1
    while k * n_classes < smallest:
        sizes.append(SizeSpec("per_class", float(k)))
        k *= 2
    if not sizes:  # a small train split: the fractions alone would start at a handful of images
        sizes.append(SizeSpec("per_class", 1.0))
    last = sizes[-1].value * n_classes
    sizes += [SizeSpec("fraction", float(f)) for f in fractions if f >= 1.0 or f * n_train > last]
    return sizes


def nominal_images(size: SizeSpec, n_train: int, n_classes: int) -> float:
    """The size in images, for ordering a ladder and for plots of nominal sizes."""
    if size.kind == "per_class":
        return size.value * n_classes
    if size.kind == "fraction":
        return size.value * n_train
    return size.value


def sort_sizes(sizes: Sequence[SizeSpec], n_train: int, n_classes: int) -> list[SizeSpec]:
    """Sizes ordered by nominal images, duplicates (same label) dropped."""
    unique = {s.label: s for s in sizes}
    return sorted(unique.values(), key=lambda s: (nominal_images(s, n_train, n_classes), s.label))


def draw_samples(samples: Sequence[Sample], size: SizeSpec, *, seed: int, n_classes: int) -> tuple[list[Sample], Draw]:
    """`draw_subsample` over data-set samples (fine-tuning's train split), in the samples' own order.

    A draw that misses a class is refused here: a fine-tune cannot learn a class it never sees.
    """
    draw = draw_subsample([s.id for s in samples], [s.label for s in samples], [s.group for s in samples], size,
                          seed=seed, n_classes=n_classes)
    if draw.missing:
        raise DataError(f"a train draw of {size.label} (seed {seed}) holds no image of class(es) "
                        f"{', '.join(map(str, draw.missing))}; expected every class of train; ask for a larger "
                        f"--train-size or --train-fraction")
    return [samples[i] for i in draw.index], draw
