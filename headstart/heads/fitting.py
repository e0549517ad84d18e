"""Fitting a head's whole sweep on one feature set: every config on train, scored on val or by cross-validation.

With a val split, every config is fitted on train and predicts val (one batched model, warm-started path or
neighbour search per head). With an empty val split (`cv_sweep`, `applied_model`):
- every config predicts out of fold in a k-fold cross-validation on train, stratified by class (multi-label: per
  finding, `heads.cv_strata`) and grouped by patient with the sampler's rule (`data.sampling`: a blank group is
  a patient of its own, and never turns grouping off for the others);
- multi-label: a finding some fold's head left out (one class in that fold's train part) is not scored in the
  selection: only complete out-of-fold columns are (`heads.cv_strata.complete_findings`), and the sweep's
  `findings` (the record's `selection_findings`) names the findings scored and why the others were not;
- a torch head early-stops on an inner split of its training fold (whole patients, 1/5 of it), never on the
  fold it then predicts, so the out-of-fold scores that choose the config are not optimistic;
- the chosen config is fitted once more, on train minus a held-out 1/5 of train (whole patients, stratified);
  a torch head early-stops on that hold-out, and the threshold (one per finding for multi-label) is chosen on
  that model's predictions of it; the hold-out is stratified by the same key as the folds.
  That model is the one tested and saved, so its threshold was chosen for it, on rows it never trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from headstart.data.sampling import carve, kfold
from headstart.errors import DataError
from headstart.evaluation.timing import Timer
from headstart.heads.cv_strata import complete_findings, cv_strata
from headstart.heads.protocol import Candidate, FitSettings, Rows, expand, full_proba  # noqa: F401 - re-exported
from headstart.heads.registry import get_head

log = logging.getLogger(__name__)

CV_FOLDS = 5  # folds of the cross-validation that replaces an empty val split
HELD_OUT = 0.2  # share of rows held out after an empty val: to stop a torch head early, or for the threshold
# Salts of the sampler's random streams, so folds, inner stopping splits and the final hold-out never coincide
_FOLD_STREAM, _STOP_STREAM, _HOLD_STREAM = 31, 32, 33


@dataclass
class Sweep:
    """Every candidate of one head's sweep, how long fitting them took, and the rows they were scored on."""

    candidates: list[Candidate]
    seconds: float
    selection: str  # "val" or "cv-<k>fold"
    select_rows: Rows  # rows the candidates' val_proba belong to
    findings: dict | None = None  # multi-label CV: {"scored": [...], "not_scored": {finding: reason}}


def run_sweep(head: str, splits: dict[str, Rows], *, fit: FitSettings, seed: int) -> Sweep:
    """Fit and score every config of `head`, on val when there is one, else by cross-validation on train."""
    (sweep,) = run_sweeps(head, splits, fit=fit, seeds=(seed,))
    return sweep


def run_sweeps(head: str, splits: dict[str, Rows], *, fit: FitSettings, seeds: Sequence[int]) -> list[Sweep]:
    """`run_sweep` for several seeds; with a val split, a torch head's seeds train together in one batched
    loop, and each seed's `seconds` is its share of that loop's wall time."""
    train, val = splits["train"], splits["val"]
    if not len(val.y):
        return [run_sweep_cv(head, train, fit=fit, seed=seed) for seed in seeds]
    with Timer(device=fit.device) as timer:
        per_seed = fit_sweeps(head, train, val, fit=fit, seeds=seeds)
    return [Sweep(candidates, timer.seconds / len(seeds), "val", val) for candidates in per_seed]


def run_sweep_cv(head: str, train: Rows, *, fit: FitSettings, seed: int) -> Sweep:
    with Timer(device=fit.device) as timer:
        candidates, folds, findings = cv_sweep(head, train, fit=fit, seed=seed)
    return Sweep(candidates, timer.seconds, f"cv-{folds}fold", train, findings)


def fit_sweep(head: str, train: Rows, val: Rows, *, fit: FitSettings, seed: int, params: list[dict] | None = None,
              stop_split: Callable[[Rows], np.ndarray] | None = None) -> list[Candidate]:
    """Fit every config of `head` on train and predict val; one batched model / path / search per head."""
    (candidates,) = fit_sweeps(head, train, val, fit=fit, seeds=(seed,), params=params, stop_split=stop_split)
    return candidates


def fit_sweeps(head: str, train: Rows, val: Rows, *, fit: FitSettings, seeds: Sequence[int],
               params: list[dict] | None = None,
               stop_split: Callable[[Rows], np.ndarray] | None = None) -> list[list[Candidate]]:
    """`fit_sweep` for several seeds, as the head's kind fits them (`HeadKind.fit_sweeps`): logreg and kNN
    ignore the seed, so they fit once and every seed gets the same candidates; the torch heads train every
    seed's configs in one batched loop (`train_batched_seeds`).

    `params`: the configs to fit (default: the grid's). `stop_split`: for heads that stop early, the positions
    of the train rows to stop on instead of val; such a head then fits on the other train rows and predicts val
    with the weights it kept. Heads that do not stop early fit on all of train and never call it.
    """
    return get_head(head).fit_sweeps(train, val, fit=fit, seeds=seeds, params=params, stop_split=stop_split)


def cv_sweep(head: str, train: Rows, *, fit: FitSettings,
             seed: int) -> tuple[list[Candidate], int, dict | None]:
    """Out-of-fold val probabilities for every config of a grouped, stratified k-fold on train (module doc), the
    fold count, and for multi-label which findings the out-of-fold columns score; the selected config is fitted
    again afterwards (`applied_model`)."""
    strata = cv_strata(train.ids, train.groups, train.y, train.mask, fit.task)
    folds = min(CV_FOLDS, strata.most_folds)
    if folds < 2:  # every fold's training part needs each (stratified) class
        raise DataError(strata.reason)
    fold_of = kfold(train.ids, train.groups, strata.key, k=folds, seed=(seed, _FOLD_STREAM))
    log.warning("val split is empty: selecting the config by %d-fold stratified cross-validation on train, grouped "
                "by patient (an ungrouped image is a patient of its own), then fitting it on train minus a held-out "
                "fifth, on which the threshold is chosen%s", folds,
                f" (folds limited by {strata.limit})" if strata.limit and folds < CV_FOLDS else "")
    params = fit.grid.configs(head)
    oof = [np.zeros((len(train.y), fit.n_classes), dtype=np.float32) for _ in params]
    left_out = []  # multi-label: (L,) findings each fold's head did not train (NaN probabilities)
    for f in range(folds):
        held_idx = np.flatnonzero(fold_of == f)
        if not len(held_idx):  # possible only when a few patients hold most rows
            continue
        fold = fit_sweep(head, train.take(np.flatnonzero(fold_of != f)), train.take(held_idx), fit=fit, seed=seed,
                         stop_split=lambda rows, f=f: _held_out(rows, fit, seed=(seed, _STOP_STREAM, f)))
        for i, cand in enumerate(fold):
            oof[i][held_idx] = cand.val_proba
        left_out.append(np.isnan(np.asarray(fold[0].val_proba, dtype=np.float64)).any(axis=0))
    if fit.task.kind != "multilabel":
        return [Candidate(p, proba, None) for p, proba in zip(params, oof)], folds, None
    findings = complete_findings(oof, left_out, train.y, train.mask, fit.task)
    if findings["not_scored"]:
        log.warning("cross-validation scores %d of %d findings; not scored: %s", len(findings["scored"]),
                    len(fit.task.names), "; ".join(f"{k} ({v})" for k, v in findings["not_scored"].items()))
    return [Candidate(p, proba, None) for p, proba in zip(params, oof)], folds, findings


@dataclass
class Applied:
    """The model a run tests and saves, and the rows (with its probabilities) its threshold is chosen on."""

    candidate: Candidate  # fitted; its val_proba belong to `rows`
    rows: Rows
    seconds: float  # fitting time beyond the sweep's


def applied_model(head: str, sweep: Sweep, cand: Candidate, train: Rows, *, fit: FitSettings, seed: int) -> Applied:
    """The selected candidate itself after selection on val. After cross-validation, the selected config fitted
    on train minus a held-out fifth of whole patients: torch heads stop early on that fifth, and the threshold
    is chosen on this model's predictions of it, so it is chosen for the model that is applied."""
    if cand.estimator is not None:
        return Applied(cand, sweep.select_rows, 0.0)
    with Timer(device=fit.device) as timer:
        held = _held_out(train, fit, seed=(seed, _HOLD_STREAM))
        if not len(held):
            raise DataError("val is empty and train's patients cannot be split to hold some out for the threshold "
                            "(one patient holds most rows); add a val split")
        rest = np.setdiff1d(np.arange(len(train.y)), held)
        (final,) = fit_sweep(head, train.take(rest), train.take(held), fit=fit, seed=seed, params=[cand.params])
    return Applied(final, train.take(held), timer.seconds)


def _held_out(rows: Rows, fit: FitSettings, *, seed: tuple[int, ...]) -> np.ndarray:
    """Positions of about HELD_OUT of `rows`: whole patients, stratified as the folds are (class, or per finding;
    `heads.cv_strata`); empty when impossible."""
    key = cv_strata(rows.ids, rows.groups, rows.y, rows.mask, fit.task).key
    return carve(rows.ids, rows.groups, key, n=round(HELD_OUT * len(rows.y)), seed=seed)
