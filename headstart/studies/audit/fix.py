"""`audit --fix`: new splits in which every near-duplicate group lives in one split, published without re-extracting.

The rule (`plan_fix`, pure). Images joined by a near-duplicate or exact-duplicate pair form a group, and so do all
images of a patient (a known `/samples/group`) that has an image in such a group: moving one image of a patient
would otherwise create the patient leakage the audit also flags. Each group that spans splits moves, whole, to the
split holding most of its images (ties: train, then val, then test), which moves the fewest images.

The test split changes only with confirmation (`--yes`): a group with an image in test either pulls train images
into test or takes test images out, and test is the one split whose membership a comparison must be able to
trust. Without it the fix is refused with the count of test images it would move, and nothing is written.
`headstart.cache.writer.publish_splits` publishes the splits through the cache's re-split path.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from headstart.cache.reader import FeatureCache
from headstart.cache.writer import publish_splits
from headstart.data.types import SPLITS


@dataclass
class SplitFix:
    """What `--fix` decided and did."""

    splits: np.ndarray  # (N,) the new split of every row
    moves: list[dict] = field(default_factory=list)  # {id, group, from, to}, one per moved image
    n_groups: int = 0  # groups that spanned splits (and moved)
    refused: str | None = None  # why nothing was published (test would change without --yes)
    published: bool = False
    note: str = ""  # why there was nothing to do

    @property
    def test_moves(self) -> int:
        return sum("test" in (m["from"], m["to"]) for m in self.moves)

    def counts(self) -> dict[str, int]:
        return {s: int((self.splits == s).sum()) for s in SPLITS if (self.splits == s).any()}

    def to_json(self) -> dict:
        return {"published": self.published, "refused": self.refused, "note": self.note, "n_groups": self.n_groups,
                "n_moved": len(self.moves), "n_test_moved": self.test_moves, "moves": self.moves,
                "splits": self.counts()}


def plan_fix(ids: np.ndarray, splits: np.ndarray, groups: np.ndarray, pairs: list[dict]) -> SplitFix:
    """The new splits for the rows `ids` (current `splits`, patient `groups`) given the audit's `pairs`."""
    row_of = {str(i): r for r, i in enumerate(ids.tolist())}
    parent = list(range(len(ids)))

    def root(r: int) -> int:
        while parent[r] != r:
            parent[r] = parent[parent[r]]
            r = parent[r]
        return r

    def join(a: int, b: int) -> None:
        parent[root(a)] = root(b)

    linked = set()
    for p in pairs:
        a, b = row_of.get(str(p["id_a"])), row_of.get(str(p["id_b"]))
        if a is not None and b is not None:
            join(a, b)
            linked.update((a, b))
    by_patient = defaultdict(list)
    for r, g in enumerate(groups.tolist()):
        if g:
            by_patient[g].append(r)
    for g in {groups[r] for r in linked if groups[r]}:  # whole patients move with their duplicates
        for r in by_patient[g][1:]:
            join(by_patient[g][0], r)
    roots, members = {root(x) for x in linked}, defaultdict(list)
    for r in range(len(ids)):
        if root(r) in roots:
            members[root(r)].append(r)
    new = splits.astype(object).copy()
    fix = SplitFix(splits=new)
    for k, rows in enumerate(sorted(members.values(), key=lambda rs: str(ids[rs[0]]))):
        count = Counter(str(splits[r]) for r in rows)
        if len(count) < 2:
            continue
        target = max(count, key=lambda s: (count[s], -SPLITS.index(s)))
        fix.n_groups += 1
        for r in rows:
            if splits[r] != target:
                new[r] = target
                fix.moves.append({"id": str(ids[r]), "group": fix.n_groups, "from": str(splits[r]), "to": target})
    return fix


def fix_splits(cache_path: str, pairs_check, *, confirm: bool) -> SplitFix:
    """Decide the fix for the audit's near-duplicate result `pairs_check` and publish it (test only with
    `confirm`). A skipped near-duplicate check, or no group spanning splits, leaves the cache as it is."""
    with FeatureCache(cache_path) as cache:
        ids, splits, groups = cache.ids, cache.splits, cache.groups
    if pairs_check.skipped:
        return SplitFix(splits=splits, note=f"nothing to fix: the near-duplicate check was skipped "
                                            f"({pairs_check.skipped})")
    fix = plan_fix(ids, splits, groups, pairs_check.data.get("pairs") or [])
    if not fix.moves:
        fix.note = "nothing to fix: no near-duplicate group spans two splits"
        return fix
    if fix.test_moves and not confirm:
        fix.refused = (f"--fix would move {fix.test_moves} image(s) into or out of the test split ({len(fix.moves)} "
                       f"moves in {fix.n_groups} near-duplicate group(s)); test changes only when confirmed: rerun "
                       f"with --fix --yes, or leave the splits as they are")
        return fix
    note = {"by": "headstart audit --fix", "n_groups": fix.n_groups, "moves": fix.moves[:1000]}
    fix.published = publish_splits(cache_path, [str(s) for s in fix.splits], note=note)
    return fix
