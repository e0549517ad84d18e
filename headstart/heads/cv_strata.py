"""What the cross-validation that replaces an empty val split stratifies on, and which findings it can score.

Single-label: the class index, and as many folds as the rarest class has patients (every fold's training part
then holds every class).

Multi-label (`data.sampling` takes the 2-D key): one column per finding that can be stratified, i.e. one with a
known positive in at least 2 units (patients; an ungrouped image is a unit of its own) and a known negative in
at least 2 units. The column is the finding's rarer class over units: its positives, or for a finding positive in
almost every unit its negatives, so those few negatives are spread over the folds too (a fold whose training part
lacks them would leave the finding out). Masked labels (uncertain under `--uncertain ignore`, unknown) count as
neither. The folds are as many as the stratified finding with the fewest such units allows (at most `CV_FOLDS`).
Rarer findings are not stratified and may be left out of training in some folds.

Scoring rule (`complete_findings`): a finding is scored out of fold only when every fold's head trained it, so
that its out-of-fold column is complete. A finding left out in some fold would otherwise be scored on the other
folds' rows only, which hold none of the rows that made it one-class there (typically its only positive patient),
so its AUROC would be undefined or drawn from an unrepresentative part of train. Its column is set to NaN (the
task's `score` skips it), and the record's `selection_findings` names the findings scored and, for the others,
the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headstart.data.sampling import units_per_stratum
from headstart.tasks.core import Task
from headstart.tasks.multilabel import NOT_TRAINED, class_presence

# why a finding trained on the whole train split got no out-of-fold score (reported beside the fold numbers)
NOT_IN_EVERY_FOLD = "not scored in cross-validation: left out of training in a fold whose train part holds one class"


@dataclass(frozen=True)
class Strata:
    """The sampler's stratification key for some rows, and the most folds it supports."""

    key: np.ndarray  # (N,) class index, or (N, S) 0/1 columns of the stratified findings
    most_folds: int  # folds whose training parts still hold every stratified class (0: none can be stratified)
    reason: str  # why cross-validation is impossible when most_folds < 2: what is missing, and what to do
    limit: str = ""  # multi-label: the stratified finding that sets most_folds (for the log line)


def cv_strata(ids: np.ndarray, groups: np.ndarray, y: np.ndarray, mask: np.ndarray | None, task: Task) -> Strata:
    """The key and fold count of the rows of one split under `task` (module doc)."""
    if task.kind != "multilabel":
        units = units_per_stratum(ids, groups, y)
        return Strata(np.asarray(y), int(units.min()) if len(units) else 0,
                      "val is empty and a class has only one train patient (or ungrouped image), so "
                      "cross-validation cannot replace val; add a val split or more train rows of that class")
    y = np.asarray(y)
    known = np.ones(y.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    pos, neg = ((y == 1) & known).astype(np.int8), ((y == 0) & known).astype(np.int8)
    n_findings = y.shape[1]
    pos_units = units_per_stratum(ids, groups, pos)[:n_findings]  # [:L]: the sampler adds a rows-with-none column
    neg_units = units_per_stratum(ids, groups, neg)[:n_findings]
    units = np.minimum(pos_units, neg_units)
    stratified = units >= 2
    reason = ("val is empty and no finding has a positive and a negative label in at least 2 train patients (or "
              "ungrouped images) each, so cross-validation cannot replace val; add a val split or more train rows")
    if not stratified.any():
        return Strata(pos, 0, reason)
    rarer = np.where((pos_units <= neg_units)[None, :], pos, neg)
    j = int(np.flatnonzero(stratified)[np.argmin(units[stratified])])
    rarer_class = "positive" if pos_units[j] <= neg_units[j] else "negative"
    limit = f"{task.names[j]}: {int(units[j])} patients with a {rarer_class} label"
    return Strata(rarer[:, stratified], int(units[stratified].min()), reason, limit)


def complete_findings(oof: list[np.ndarray], left_out: list[np.ndarray], y: np.ndarray, mask: np.ndarray | None,
                      task: Task) -> dict:
    """Blank (NaN) every candidate's out-of-fold column of a finding some fold left out, so selection scores only
    complete columns (module doc); returns the record's {"scored": [...], "not_scored": {finding: reason}}.

    `left_out[f]` is (L,) bool: the findings fold f's head did not train."""
    left = np.stack(left_out) if left_out else np.zeros((0, len(task.names)), dtype=bool)
    pos, neg = class_presence(y, mask)
    not_scored = {}
    for j, name in enumerate(task.names):
        folds = np.flatnonzero(left[:, j])
        if not len(folds):
            continue
        for proba in oof:
            proba[:, j] = np.nan
        not_scored[name] = (NOT_TRAINED if not (pos[j] and neg[j]) else
                            f"{NOT_IN_EVERY_FOLD} (fold {', '.join(str(int(f) + 1) for f in folds)} of {len(left)})")
    return {"scored": [n for n in task.names if n not in not_scored], "not_scored": not_scored}
