"""Heads on a multi-label cache: the record contract, untrained findings, label policies, saved heads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import headstart
from headstart.cli import cli
from headstart.heads.graph import head_module
from headstart.heads.persist import read_head
from headstart.tasks.multilabel import NOT_TRAINED
from tests.heads.multilabel_cache import FINDINGS, make_multilabel_cache, multilabel_arrays

FAST = dict(sweep="quick", n_boot=30, device="cpu", progress=False)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return make_multilabel_cache(tmp_path_factory.mktemp("ml") / "c.h5")


def _record(runs_dir, record):
    return json.loads((runs_dir / record.run_id / "record.json").read_text())


def test_logreg_record_contract(cache, tmp_path):
    (record,) = headstart.run_heads(cache, tmp_path / "runs", heads=["logreg"], **FAST)
    doc = _record(tmp_path / "runs", record)
    assert doc["dataset"]["task"] == "multilabel" and doc["dataset"]["labels"] == list(FINDINGS)
    assert record.run_id == "cached-head_feat_logreg_s0"
    _, raw, splits, _ = multilabel_arrays()
    for split in ("val", "test"):
        m = doc["metrics"][split]
        per = m["per_label"]
        assert list(per) == list(FINDINGS)
        for name in FINDINGS[:3]:
            assert set(per[name]) >= {"auroc", "auroc_ci", "auprc", "sensitivity", "specificity", "threshold", "n",
                                      "n_pos", "n_masked"}
            assert per[name]["auroc"] is not None and per[name]["auroc_ci"][0] <= per[name]["auroc_ci"][1]
        # Rare has no positive in train: left out, null with the reason, the others go on
        assert per["Rare"]["auroc"] is None and per["Rare"]["reason"] == NOT_TRAINED
        assert m["auroc"] == pytest.approx(np.mean([per[n]["auroc"] for n in FINDINGS[:3]]))
        assert m["ci_method"] in ("bootstrap", "cluster-bootstrap") and m["n_clusters"] > 0
        pred = doc["predictions"][split]
        proba, mask = np.array(pred["proba"], dtype=float), np.array(pred["mask"], dtype=bool)
        codes = raw[splits == split]
        assert proba.shape == mask.shape == codes.shape
        assert not mask[codes == -1].any() and mask[codes >= 0].all()  # uncertain never scored, blanks negative
        assert np.isnan(proba[:, 3]).all() and np.isfinite(proba[:, :3]).all()
        assert [per[n]["n_masked"] for n in FINDINGS] == (~mask).sum(axis=0).tolist()
    assert set(doc["threshold"]) == set(FINDINGS) and doc["threshold"]["Rare"] is None
    assert doc["metrics"]["test"]["per_label"]["Edema"]["threshold"] == doc["threshold"]["Edema"]
    assert doc["config"]["uncertain"] == "ignore" and doc["config"]["blank"] == "negative"
    assert doc["metrics"]["val"]["auroc"] == pytest.approx(max(s["auroc"] for s in doc["config"]["sweep_scores"]))


def test_saved_head_predicts_the_record_and_its_graph_is_sigmoid(cache, tmp_path):
    (record,) = headstart.run_heads(cache, tmp_path / "runs", heads=["logreg"], **FAST)
    saved = read_head(tmp_path / "runs" / record.run_id)
    info = saved.info
    assert info["task"] == "multilabel" and info["link"] == "sigmoid" and info["labels"] == list(FINDINGS)
    assert info["untrained"] == {"Rare": NOT_TRAINED} and saved.threshold == record.threshold
    X, _, splits, _ = multilabel_arrays()
    X = X.astype(np.float16).astype(np.float32)  # as the cache stores them
    proba = saved.estimator.predict_proba(X[splits == "test"])
    np.testing.assert_allclose(proba, np.array(record.predictions["test"]["proba"], dtype=float), rtol=1e-5)
    graph = head_module(saved.estimator)(torch.from_numpy(X[splits == "test"])).numpy()
    np.testing.assert_allclose(graph, proba, rtol=1e-4, atol=1e-6, equal_nan=True)
    assert graph.shape == (int((splits == "test").sum()), len(FINDINGS))


def test_uncertain_policy_changes_training_not_scoring(cache, tmp_path):
    runs = tmp_path / "runs"
    (ignore,) = headstart.run_heads(cache, runs, heads=["logreg"], **FAST)
    (ones,) = headstart.run_heads(cache, runs, heads=["logreg"], uncertain="ones", **FAST)
    (edema,) = headstart.run_heads(cache, runs, heads=["logreg"], uncertain=["zeros", "ones:edema"],
                                   blank="unknown", **FAST)
    assert ones.run_id == "cached-head_feat_logreg_u-ones_s0" and ones.config["uncertain"] == "ones"
    assert edema.run_id == "cached-head_feat_logreg_u-zeros-ones-Edema-blank-unknown_s0"
    assert edema.config["uncertain_per_label"] == {"Edema": "ones"} and edema.config["blank"] == "unknown"
    assert len(list(runs.glob("*/record.json"))) == 3  # side by side, no overwrite
    # the same scored labels under U-Ignore and U-Ones (evaluation never scores an uncertain label) ...
    assert ignore.predictions["test"]["mask"] == ones.predictions["test"]["mask"]
    # ... but other training rows, so other probabilities
    assert not np.allclose(np.array(ignore.predictions["test"]["proba"], dtype=float)[:, :3],
                           np.array(ones.predictions["test"]["proba"], dtype=float)[:, :3])
    # --blank unknown masks the blanks out of scoring too
    _, raw, splits, _ = multilabel_arrays()
    mask = np.array(edema.predictions["test"]["mask"], dtype=bool)
    assert not mask[raw[splits == "test"] < 0].any()


def test_cli_options_and_bad_policy(cache, tmp_path):
    args = ["heads", str(cache), "-o", str(tmp_path / "runs"), "--head", "logreg", "--sweep", "quick",
            "--n-boot", "20", "--device", "cpu"]
    result = CliRunner().invoke(cli, [*args, "--uncertain", "zeros", "--uncertain", "ones:Atelectasis,Edema"])
    assert result.exit_code == 0, result.output
    (path,) = (tmp_path / "runs").glob("*/record.json")
    config = json.loads(path.read_text())["config"]
    rules = {name: config["uncertain_per_label"].get(name, config["uncertain"]) for name in FINDINGS}
    assert rules == {"Atelectasis": "ones", "Edema": "ones", "Effusion": "zeros", "Rare": "zeros"}
    bad = CliRunner().invoke(cli, [*args, "--uncertain", "ones:Pneumothorax"])
    assert bad.exit_code == 2 and "'Pneumothorax' is not a finding" in bad.output and "Traceback" not in bad.output
    assert len([line for line in bad.output.splitlines() if line.startswith("Error")]) == 1  # a usage error


def test_no_trainable_finding_is_one_clear_error(tmp_path):
    X, raw, splits, groups = multilabel_arrays()
    raw[splits == "train"] = 0
    headstart.cache.write_features(tmp_path / "c.h5", features={"feat": X}, labels=raw,
                                   ids=[f"i{i}" for i in range(len(X))], splits=list(splits),
                                   classes=list(FINDINGS), groups=list(groups))
    with pytest.raises(headstart.errors.DataError, match="no finding .* has both a positive and a negative"):
        headstart.run_heads(tmp_path / "c.h5", tmp_path / "runs", heads=["logreg"], **FAST)


@pytest.mark.parametrize("head", ["logreg", "linear", "mlp", "knn"])
def test_every_head_kind_answers_per_finding(cache, tmp_path, head):
    (record,) = headstart.run_heads(cache, tmp_path / "runs", heads=[head], **FAST)
    test = record.metrics["test"]
    assert record.dataset["task"] == "multilabel" and test["per_label"]["Rare"]["reason"] == NOT_TRAINED
    assert all(test["per_label"][n]["auroc"] is not None for n in FINDINGS[:3])
    assert test["auroc"] > 0.7  # each finding follows one feature: every head finds it
    proba = np.array(record.predictions["test"]["proba"], dtype=float)
    assert proba.shape[1] == len(FINDINGS) and np.isnan(proba[:, 3]).all()
    assert ((proba[:, :3] >= 0) & (proba[:, :3] <= 1)).all()
    saved = read_head(tmp_path / "runs" / record.run_id)
    assert saved.info["link"] == "sigmoid" and saved.info["untrained"] == {"Rare": NOT_TRAINED}
    X, _, splits, _ = multilabel_arrays()
    X = X[splits == "test"].astype(np.float16).astype(np.float32)
    again = saved.estimator.predict_proba(X)
    np.testing.assert_allclose(again, proba, rtol=1e-4, atol=1e-6)
    graph = head_module(saved.estimator)(torch.from_numpy(X)).numpy()  # sigmoid per finding, not a softmax
    np.testing.assert_allclose(graph, again, rtol=1e-4, atol=1e-5, equal_nan=True)
