"""The pure decisions of `headstart screen`: which rows each round sees, and who is dropped after it.

- **Subsets.** Round 1 draws `fraction` of train+val (at least `min_images`), whole patients, stratified by class
  and by split, so each subset keeps train's and val's share (`data.draws`). Each later round doubles it by
  drawing more patients from the rows not yet drawn, so every subset contains the previous one and the rows a
  candidate has already forwarded are reused, never forwarded again.
- **Drops.** Candidates are ranked by val AUROC. Any whose interval's upper end is below the leader's lower end
  is dropped, then the bottom half (never below `keep`). When the subset is already all of train+val, the rest
  are cut to the top `keep`: there is no larger round to wait for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from headstart.data.draws import SizeSpec, draw_subsample
from headstart.data.sampling import unit_keys


@dataclass(frozen=True)
class Standing:
    """One candidate after a round: its val AUROC and 95% bootstrap interval."""

    backbone: str
    val_auroc: float
    ci: tuple[float, float]


def round_sizes(pool: int, *, fraction: float, min_images: int) -> list[int]:
    """Images per round: max(fraction x pool, min_images), doubled each round, the last one the whole pool."""
    sizes = []
    n = max(int(round(fraction * pool)), min_images)
    while n < pool:
        sizes.append(n)
        n *= 2
    return sizes + [pool]


def grow_subset(ids: np.ndarray, strata: np.ndarray, groups: np.ndarray, *, have: np.ndarray, target: int,
                seed: int, round_index: int) -> np.ndarray:
    """Positions (into the pool arrays) of a subset of about `target` rows that contains `have`.

    The new rows are a stratified draw of whole patients from the rows not in `have` whose patients are not in
    it either, so a patient never straddles the subset's edge.
    """
    inside = np.zeros(len(ids), dtype=bool)
    inside[have] = True
    if target >= len(ids):
        return np.arange(len(ids))
    keys = unit_keys(ids, groups)  # a blank group is a patient of its own: never "taken" by another row
    free = np.flatnonzero(~inside & ~np.isin(keys, keys[inside]))
    missing = target - int(inside.sum())
    if missing <= 0 or not len(free):
        return np.flatnonzero(inside)
    n_strata = int(strata.max()) + 1
    draw = draw_subsample(ids[free], strata[free], groups[free], SizeSpec("count", float(missing)),
                          seed=seed * 1009 + round_index, n_classes=n_strata)
    inside[free[draw.index]] = True
    return np.flatnonzero(inside)


def decide(standings: list[Standing], *, keep: int, final: bool) -> tuple[list[str], list[dict]]:
    """(survivors in rank order, dropped [{backbone, reason}]) after one round.

    NaN AUROC ranks last. Never fewer than `keep` survive; `final` (the subset is everything) cuts to `keep`.
    """
    ranked = sorted(standings, key=lambda s: (-s.val_auroc if math.isfinite(s.val_auroc) else math.inf, s.backbone))
    leader = ranked[0]
    alive = list(ranked)
    dropped: list[dict] = []

    def drop(s: Standing, reason: str) -> None:
        alive.remove(s)
        dropped.append({"backbone": s.backbone, "reason": reason})

    for s in reversed(ranked[1:]):  # worst first, so the floor of `keep` spares the better ones
        if len(alive) <= keep:
            break
        if math.isfinite(s.ci[1]) and math.isfinite(leader.ci[0]) and s.ci[1] < leader.ci[0]:
            drop(s, f"interval upper end {s.ci[1]:.3f} is below the leader's ({leader.backbone}) lower end "
                    f"{leader.ci[0]:.3f}")
    quota = keep if final else max(keep, math.ceil(len(ranked) / 2))
    for s in list(alive[quota:]):
        rank = ranked.index(s) + 1
        drop(s, f"not in the top {keep} on all of train+val (rank {rank} of {len(ranked)})" if final
             else f"bottom half (rank {rank} of {len(ranked)})")
    return [s.backbone for s in alive], dropped
