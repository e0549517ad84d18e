"""MultilabelTask.evaluate: per-finding and macro intervals from one set of resamples, patient-clustered where
groups name patients; untrained (NaN) findings and one-class findings are null with their reason."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from headstart.tasks import make_task
from headstart.tasks.multilabel import NOT_TRAINED, ONE_CLASS


def _split(n=240, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 3)) < 0.4).astype(int)
    proba = np.clip(0.3 * y + 0.7 * rng.random((n, 3)), 0, 1)
    mask = rng.random((n, 3)) > 0.1
    return y, proba, mask


def test_clustered_intervals_and_nulls():
    y, proba, mask = _split()
    y[:, 1] = 0  # one class among the scored rows
    proba[:, 2] = np.nan  # a finding left out of training
    task = make_task("multilabel", ["a", "b", "c"])
    groups = np.array([f"p{i // 4}" for i in range(len(y))])
    out = task.evaluate(y, proba, threshold=[0.5, None, None], n_boot=300, seed=0, mask=mask, groups=groups)
    assert out["ci_method"] == "cluster-bootstrap" and out["n_clusters"] == len(y) // 4
    a = out["per_label"]["a"]
    assert abs(a["auroc"] - roc_auc_score(y[mask[:, 0], 0], proba[mask[:, 0], 0])) < 1e-12
    assert a["auroc_ci"][0] < a["auroc"] < a["auroc_ci"][1]
    assert out["per_label"]["b"]["reason"] == ONE_CLASS and out["per_label"]["c"]["reason"] == NOT_TRAINED
    assert out["auroc"] == a["auroc"] and out["auroc_ci"] == a["auroc_ci"]  # the macro over the one scored finding
    plain = task.evaluate(y, proba, threshold=None, n_boot=300, seed=0, mask=mask)
    assert plain["ci_method"] == "bootstrap" and plain["n_clusters"] == len(y)
    # four images per patient: resampling patients widens the interval of these independent labels less than
    # it would for correlated ones, but the draws differ from the image bootstrap's
    assert plain["per_label"]["a"]["auroc_ci"] != a["auroc_ci"]
