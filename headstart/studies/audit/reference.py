"""The reference head: logistic regression on the audited feature set, selected on val, scored on test once.

The label-shuffle floor retrains its configuration on shuffled labels, the power estimate simulates from its
test scores, and the split-shift check compares its val-chosen operating point on val and on test.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from headstart.evaluation.thresholds import choose_threshold
from headstart.studies.audit.config import AuditConfig
from headstart.studies.audit.fit import (
    Fitted, auroc, predict_proba, select_logreg, stratified_subsample, why_not_fittable,
)
from headstart.studies.audit.inputs import AuditInputs

log = logging.getLogger(__name__)


@dataclass
class Reference:
    fitted: Fitted
    train: np.ndarray  # row indices the head was fitted on (a stratified subsample above max_fit_rows)
    val: np.ndarray
    test: np.ndarray
    val_proba: np.ndarray  # (n_val, C)
    test_proba: np.ndarray  # (n_test, C)
    test_auroc: float
    threshold: float | None  # binary: Youden threshold chosen on val (None for multi-class or without val)


def fit_reference(inputs: AuditInputs, config: AuditConfig) -> Reference | str:
    """The fitted reference head, or one line saying why it cannot be fitted (no features, one class, ...)."""
    if inputs.features is None:
        return inputs.feature_note
    usable = inputs.valid if inputs.valid is not None else np.ones(inputs.n, dtype=bool)
    why = why_not_fittable(inputs.splits[usable], inputs.labels[usable], inputs.classes)
    if why:
        return why
    rng = np.random.default_rng(config.seed)
    train = stratified_subsample(inputs.rows("train"), inputs.labels, max_rows=config.max_fit_rows, rng=rng)
    val, test = inputs.rows("val"), inputs.rows("test")
    x, y, n_classes = inputs.features, inputs.labels, len(inputs.classes)
    if len(train) < len(inputs.rows("train")):
        log.info("reference head: fitting on %d of %d train rows", len(train), len(inputs.rows("train")))
    fitted = select_logreg(x[train], y[train], x[val], y[val], Cs=config.C_grid, n_classes=n_classes,
                           max_iter=config.max_iter)
    val_proba = predict_proba(fitted, x[val], n_classes=n_classes)
    test_proba = predict_proba(fitted, x[test], n_classes=n_classes)
    threshold = None
    if n_classes == 2 and np.unique(y[val]).size == 2:
        threshold = choose_threshold(y[val], val_proba[:, 1], rule="youden")
    return Reference(fitted, train, val, test, val_proba, test_proba, auroc(y[test], test_proba), threshold)
