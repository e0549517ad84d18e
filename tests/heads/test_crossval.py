"""The empty-val fallback: grouped folds with blank groups, inner early stopping, and a threshold for the applied model.

Each test here fails on the fallback as it was (sklearn folds that one blank group turned ungrouped, torch heads
stopping on the fold they predicted, a threshold chosen on fold models but applied to a refit on all of train).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from headstart.cache.reader import FeatureCache
from headstart.evaluation.thresholds import choose_threshold
from headstart.heads import torch_heads
from headstart.heads.fitting import FitSettings, Rows, cv_sweep
from headstart.heads.logreg import LogRegHead
from headstart.heads.persist import load_head
from headstart.heads.runner import HeadsConfig, run_heads
from headstart.heads.sweep import get_sweep
from tests.heads.synthetic_cache import make_cache

QUICK = FitSettings(grid=get_sweep("quick"), class_weight=None, n_classes=2, device="cpu")


def _copied_patients(n_patients: int = 90, per: int = 3, n_blank: int = 12, dim: int = 6, seed: int = 0) -> Rows:
    """Patients whose images are identical copies (one random vector each) with a random label, plus a few
    ungrouped images. Nothing is learnable: only a patient's own copy in the training fold predicts its label."""
    rng = np.random.default_rng(seed)
    X, y, groups = [], [], []
    for p in range(n_patients):
        X += [rng.normal(size=dim)] * per
        y += [int(rng.random() < 0.5)] * per
        groups += [f"p{p:03d}"] * per
    for _ in range(n_blank):
        X.append(rng.normal(size=dim))
        y.append(int(rng.random() < 0.5))
        groups.append("")
    ids = np.array([f"img{i:04d}" for i in range(len(y))], dtype=object)
    return Rows(np.asarray(X, dtype=np.float32), np.asarray(y), ids, np.asarray(groups, dtype=object))


def test_blank_groups_never_let_a_patient_straddle_cv_folds():
    """With some blank groups, patients still never straddle folds: a 1-NN-like kNN on copied images would score
    its own copy (AUROC near 1) if a patient sat in the training fold of the fold that predicts it."""
    train = _copied_patients()
    candidates, folds, findings = cv_sweep("knn", train, fit=QUICK, seed=0)
    assert findings is None  # single-label: every class is scored
    assert folds == 5
    for cand in candidates:
        auroc = roc_auc_score(train.y, cand.val_proba[:, 1])
        assert auroc < 0.7, f"k={cand.params['k']}: out-of-fold AUROC {auroc:.3f} on pure noise: patients leaked"


def test_torch_heads_stop_early_on_an_inner_split_of_the_training_fold(monkeypatch):
    """Each fold's torch sweep trains and stops on rows of its training fold only; the fold it predicts out of
    fold is neither trained nor stopped on."""
    train = _copied_patients(n_patients=40, per=2, n_blank=8)
    train.X[:, 0] = np.arange(len(train.y))  # the row number, to see which rows each call was given
    calls = []
    real = torch_heads.train_batched_seeds  # the torch kinds' batched loop (heads.torch_heads.LinearKind)

    def spy(X_fit, y_fit, X_stop, y_stop, **kwargs):
        calls.append((set(X_fit[:, 0].astype(int).tolist()), set(X_stop[:, 0].astype(int).tolist())))
        return real(X_fit, y_fit, X_stop, y_stop, **kwargs)

    monkeypatch.setattr(torch_heads, "train_batched_seeds", spy)
    cv_sweep("linear", train, fit=QUICK, seed=0)
    assert len(calls) == 5
    predicted = []
    for fit_rows, stop_rows in calls:
        assert stop_rows and not fit_rows & stop_rows
        predicted.append(set(range(len(train.y))) - fit_rows - stop_rows)  # the fold predicted out of fold
    assert sorted(i for p in predicted for i in p) == list(range(len(train.y)))  # each row predicted exactly once
    for (fit_rows, stop_rows), held in zip(calls, predicted):
        stop_groups = {train.groups[i] for i in stop_rows if train.groups[i]}
        assert not stop_groups & {train.groups[i] for i in held | fit_rows if train.groups[i]}  # whole patients


@pytest.mark.parametrize("head", ["logreg", "mlp"])
def test_threshold_is_chosen_for_the_model_that_is_applied(tmp_path, head):
    """After cross-validation the record's val predictions are the saved head's own predictions of held-out train
    rows, so the threshold chosen on them (and frozen for test) belongs to the model that is tested and saved."""
    path = make_cache(tmp_path / "noval.h5", split_cycle=("train", "train", "train", "test"))
    (record,) = run_heads(cache_path=path, runs_dir=tmp_path / "runs", progress=False,
                          config=HeadsConfig(heads=[head], sweep="quick", n_boot=20, device="cpu"))
    assert record.config["selection"] == "cv-5fold"
    with FeatureCache(path) as cache:
        X, _ = cache.load("resnet18")
        ids, labels, groups = cache.ids.tolist(), cache.labels, cache.groups.tolist()
        train_ids = set(cache.ids[cache.splits == "train"].tolist())
    row = {i: k for k, i in enumerate(ids)}
    group = dict(zip(ids, groups))
    val = record.predictions["val"]
    held = set(val["ids"])
    assert held < train_ids and 0.15 * len(train_ids) <= len(held) <= 0.25 * len(train_ids)
    assert not {group[i] for i in held} & {group[i] for i in train_ids - held}  # whole patients held out
    saved = load_head(tmp_path / "runs" / record.run_id)
    p_saved = saved.predict_proba(X[[row[i] for i in val["ids"]]])[:, 1]
    np.testing.assert_allclose(np.asarray(val["proba"])[:, 1], p_saved, atol=1e-5)
    assert record.threshold == pytest.approx(choose_threshold(np.asarray(val["y_true"]), p_saved, rule="youden"))
    if head == "logreg":  # and the applied model never trained on the rows its threshold was chosen on
        rest = [row[i] for i in sorted(train_ids - held)]
        alone = LogRegHead(C=record.config["C"], class_weight="balanced").fit(X[rest], labels[rest])
        np.testing.assert_allclose(alone.predict_proba(X[[row[i] for i in val["ids"]]])[:, 1], p_saved, atol=1e-3)
