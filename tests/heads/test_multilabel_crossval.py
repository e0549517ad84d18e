"""Cross-validation on a multi-label train split (empty val): per-finding strata, patients kept whole, findings a
fold leaves out not scored (and named), and a one-line stop when no finding can be stratified."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import headstart
from headstart.errors import DataError
from headstart.heads.cv_strata import NOT_IN_EVERY_FOLD, cv_strata
from headstart.heads.fitting import FitSettings, Rows, cv_sweep
from headstart.heads.sweep import get_sweep
from headstart.tasks.factory import make_task
from headstart.tasks.multilabel import NOT_TRAINED, ONE_CLASS
from tests.heads.multilabel_cache import FINDINGS, multilabel_arrays

NAMES = ("A", "B", "C")
FAST = dict(sweep="quick", n_boot=20, device="cpu", progress=False)


def _fit(names=NAMES) -> FitSettings:
    return FitSettings(grid=get_sweep("quick"), class_weight=None, device="cpu", task=make_task("multilabel", names))


def _copied_patients(n_patients: int = 80, per: int = 3, n_blank: int = 10, dim: int = 6, seed: int = 0) -> Rows:
    """Patients whose images are identical copies with random labels per finding, plus ungrouped images: nothing is
    learnable, so only a patient's own copy in a fold's training part predicts its labels."""
    rng = np.random.default_rng(seed)
    X, y, groups = [], [], []
    for p in range(n_patients):
        X += [rng.normal(size=dim)] * per
        y += [(rng.random(len(NAMES)) < 0.4).astype(np.float32)] * per
        groups += [f"p{p:03d}"] * per
    for _ in range(n_blank):
        X.append(rng.normal(size=dim))
        y.append((rng.random(len(NAMES)) < 0.4).astype(np.float32))
        groups.append("")
    ids = np.array([f"img{i:04d}" for i in range(len(y))], dtype=object)
    y = np.asarray(y)
    return Rows(np.asarray(X, dtype=np.float32), y, ids, np.asarray(groups, dtype=object),
                mask=np.ones(y.shape, dtype=bool))


def test_patients_never_straddle_multilabel_folds():
    """Copied images: a kNN that saw a patient's copy in the training part would score near 1 out of fold."""
    train = _copied_patients()
    candidates, folds, findings = cv_sweep("knn", train, fit=_fit(), seed=0)
    assert folds == 5 and findings == {"scored": list(NAMES), "not_scored": {}}
    for cand in candidates:
        for j in range(len(NAMES)):
            auroc = roc_auc_score(train.y[:, j], cand.val_proba[:, j])
            assert auroc < 0.7, f"finding {NAMES[j]}, k={cand.params['k']}: out-of-fold AUROC {auroc:.3f}: leaked"


def test_strata_use_each_findings_rarer_class_and_ignore_masked_labels():
    """A: positive in 2 patients (k = 2 from it); B: negative in only 3 patients, so its negatives are the
    column; C: a positive in a second patient that is masked (uncertain), so C has 1 positive patient and is not
    stratified at all."""
    groups = np.repeat([f"p{i}" for i in range(10)], 2).astype(object)
    ids = np.array([f"i{i}" for i in range(20)], dtype=object)
    y = np.zeros((20, 3), dtype=np.float32)
    y[groups == "p0", 0] = y[groups == "p1", 0] = 1  # A: 2 positive patients
    y[:, 1] = 1
    y[np.isin(groups, ["p2", "p3", "p4"]), 1] = 0  # B: 3 negative patients
    y[np.isin(groups, ["p5", "p6"]), 2] = 1  # C: 2 positive patients, but p6's labels are masked
    mask = np.ones(y.shape, dtype=bool)
    mask[groups == "p6", 2] = False
    task = make_task("multilabel", NAMES)
    strata = cv_strata(ids, groups, y, mask, task)
    assert strata.most_folds == 2 and strata.key.shape == (20, 2)
    np.testing.assert_array_equal(strata.key[:, 0], y[:, 0])
    np.testing.assert_array_equal(strata.key[:, 1], 1 - y[:, 1])  # B's negatives
    mask[groups == "p1", 0] = False  # A's second positive patient masked: nothing has 2 units of each class but B
    assert cv_strata(ids, groups, y, mask, task).most_folds == 3


def test_a_finding_positive_in_almost_every_patient_keeps_a_negative_in_every_training_part():
    """B is negative in 3 patients only: k = 3 (from B's negatives), every fold's head trains B, and the selection
    scores it. (The sampler's row balancing alone often spreads them too; the column choice itself is checked
    above.)"""
    train = _copied_patients(n_patients=30, n_blank=0)
    train.y[:, 1] = 1
    train.y[np.isin(train.groups, ["p003", "p011", "p027"]), 1] = 0
    candidates, folds, findings = cv_sweep("logreg", train, fit=_fit(), seed=0)
    assert folds == 3 and "B" in findings["scored"] and not findings["not_scored"]
    assert all(np.isfinite(c.val_proba).all() for c in candidates)


def _write(tmp_path, raw, splits, X, groups):
    path = tmp_path / "c.h5"
    headstart.cache.write_features(path, features={"feat": X}, labels=raw, ids=[f"i{i}" for i in range(len(X))],
                                   splits=list(splits), classes=list(FINDINGS), groups=list(groups))
    return path


@pytest.mark.parametrize("head", ["logreg", "linear"])
def test_a_finding_with_one_positive_patient_does_not_stop_the_run(tmp_path, head):
    """Rare has one positive train patient: the run goes on, the selection does not score Rare (its reason names
    the fold that left it out), and its held-out (val) metrics are null with a reason, never a crash."""
    X, raw, splits, groups = multilabel_arrays(rare_in_train=False)
    splits = np.where(splits == "val", "train", splits)
    train = splits == "train"
    raw[train, 3] = np.where(raw[train, 3] == 1, 0, raw[train, 3])
    one = groups == groups[np.flatnonzero(train)[0]]
    raw[one & train, 3] = 1
    (record,) = headstart.run_heads(_write(tmp_path, raw, splits, X, groups), tmp_path / "runs", heads=[head],
                                    **FAST)
    chosen = record.config["selection_findings"]
    assert record.config["selection"].startswith("cv-") and chosen["scored"] == list(FINDINGS[:3])
    assert chosen["not_scored"]["Rare"].startswith(NOT_IN_EVERY_FOLD) and "fold " in chosen["not_scored"]["Rare"]
    rare = record.metrics["val"]["per_label"]["Rare"]
    assert rare["auroc"] is None and rare["reason"] in (NOT_TRAINED, ONE_CLASS)
    assert record.threshold["Rare"] is None
    assert all(record.threshold[f] is not None for f in FINDINGS[:3])
    assert record.metrics["test"]["auroc"] > 0.7
    scores = [s["auroc"] for s in record.config["sweep_scores"]]
    assert all(np.isfinite(scores))  # macro over the three complete columns


def test_no_finding_to_stratify_stops_in_one_line(tmp_path):
    X, raw, splits, groups = multilabel_arrays(n=60)
    splits = np.where(splits == "val", "train", splits)
    train = splits == "train"
    raw[train] = 0
    raw[train & (groups == groups[np.flatnonzero(train)[0]])] = 1  # every finding: one positive patient
    with pytest.raises(DataError, match="no finding has a positive and a negative label in at least 2 train "
                                        "patients") as info:
        headstart.run_heads(_write(tmp_path, raw, splits, X, groups), tmp_path / "runs", heads=["logreg"], **FAST)
    assert "\n" not in str(info.value) and "add a val split" in str(info.value)
