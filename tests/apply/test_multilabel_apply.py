"""`predict` and `export` of a multi-label head: a probability and a 0/1 decision column per finding at the
head's frozen thresholds, an untrained finding's columns empty (with the reason logged), a sigmoid graph equal to
`predict` per finding, and a model card that names the task, the findings and their thresholds."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from torch import nn
from PIL import Image

import headstart
from headstart.apply import scorers
from headstart.apply.card import read_card
from headstart.errors import ExportError
from tests.apply.conftest import read_table
from tests.reliability.conftest import invoke

FINDINGS = ["A", "B", "C"]
KINDS = ("logreg", "linear", "mlp", "knn")
BASE = ["--weights", "random", "--image-size", "32", "--workers", "0"]


@pytest.fixture(scope="module")
def ml_run(tmp_path_factory):
    """60 noise images in a manifest with findings A (brighter images), B (random) and C (no positive among the
    train rows: left out of training); extracted with random weights, one logreg head."""
    root = tmp_path_factory.mktemp("ml_apply")
    rng = np.random.default_rng(0)
    (root / "data" / "img").mkdir(parents=True)
    lines = ["path,A,B,C,split,group"]
    for i in range(60):
        split = ("train", "train", "train", "val", "test")[i % 5]
        a, b = int(rng.random() < 0.5), int(rng.random() < 0.4)
        c = 0 if split == "train" else int(rng.random() < 0.3)
        pixels = rng.integers(0, 120, (40, 40)) + (100 if a else 0)
        Image.fromarray(pixels.astype(np.uint8)).save(root / "data" / "img" / f"{i:03d}.png")
        lines.append(f"img/{i:03d}.png,{a},{b},{c},{split},p{i}")
    (root / "data" / "m.csv").write_text("\n".join(lines) + "\n")
    cache = root / "c.h5"
    r = invoke("extract", str(root / "data" / "m.csv"), "-o", str(cache), "-b", "resnet18", "--labels", "A,B,C", *BASE)
    assert r.exit_code == 0, r.output
    records = headstart.run_heads(cache, root / "runs", heads=list(KINDS), sweep="quick", n_boot=20, device="cpu",
                                  progress=False)
    new = root / "new"  # a plain folder of new images (no labels)
    new.mkdir()
    for path in sorted((root / "data" / "img").glob("*.png"))[:8]:
        shutil.copy(path, new / path.name)
    runs = {r.head: root / "runs" / r.run_id for r in records}
    return {"root": root, "cache": cache, "runs": runs, "run": runs["logreg"], "new": new,
            "records": {k: json.loads((run / "record.json").read_text()) for k, run in runs.items()},
            "record": json.loads((runs["logreg"] / "record.json").read_text())}


def _columns(rows: list[dict], name: str) -> np.ndarray:
    return np.array([float(r[name]) if r[name] != "" else np.nan for r in rows])


@pytest.mark.parametrize("kind", KINDS)
def test_predict_cache_writes_columns_per_finding_equal_to_the_record(ml_run, tmp_path, caplog, kind):
    out = tmp_path / "p.csv"
    with caplog.at_level(logging.WARNING):
        result = invoke("predict", str(ml_run["runs"][kind]), "--cache", str(ml_run["cache"]), "--split", "test",
                        "-o", str(out), "--n-boot", "20")
    assert result.exit_code == 0, result.output
    rows = read_table(out)
    assert list(rows[0]) == ["id", "proba_A", "proba_B", "proba_C", "A", "B", "C", "label_A", "label_B", "label_C"]
    record = ml_run["records"][kind]
    test, threshold = record["predictions"]["test"], record["threshold"]
    assert [r["id"] for r in rows] == test["ids"]
    proba = np.array([[np.nan if v is None else v for v in row] for row in test["proba"]])
    for j, finding in enumerate(("A", "B")):
        got = _columns(rows, f"proba_{finding}")
        np.testing.assert_allclose(got, proba[:, j], rtol=0, atol=1e-6)
        cut = 0.5 if threshold[finding] is None else threshold[finding]
        assert [int(r[finding]) for r in rows] == [int(p >= cut) for p in proba[:, j]]
        assert [int(r[f"label_{finding}"]) for r in rows] == [int(v[j]) for v in test["y_true"]]
    assert threshold["C"] is None and all(r["proba_C"] == "" and r["C"] == "" for r in rows)
    assert "finding C was left out of training" in caplog.text
    summary = json.loads((tmp_path / "p.metrics.json").read_text())
    assert summary["task"] == "multilabel"
    assert summary["metrics"]["auroc"] == pytest.approx(record["metrics"]["test"]["auroc"])
    assert summary["metrics"]["per_label"]["C"]["auroc"] is None
    assert summary["metrics"]["per_label"]["C"]["reason"].startswith("left out of training")


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_export_ends_in_a_sigmoid_and_equals_predict_per_finding(ml_run, tmp_path, kind):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = tmp_path / "m.onnx"
    result = invoke("export", str(ml_run["runs"][kind]), "-o", str(model))
    assert result.exit_code == 0, result.output
    card = read_card(tmp_path / "m.json")
    assert card["task"] == "multilabel" and card["link"] == "sigmoid" and card["findings"] == FINDINGS
    assert card["output"]["link"] == "sigmoid" and card["output"]["classes"] == FINDINGS
    assert card["threshold"] == ml_run["records"][kind]["threshold"] and set(card["untrained"]) == {"C"}
    from_run, from_model = tmp_path / "run.csv", tmp_path / "model.csv"
    for source, out in ((ml_run["runs"][kind], from_run), (model, from_model)):
        result = invoke("predict", str(source), str(ml_run["new"]), "-o", str(out), *BASE[-2:])
        assert result.exit_code == 0, result.output
    a, b = read_table(from_run), read_table(from_model)
    assert list(a[0]) == list(b[0]) == ["id", "proba_A", "proba_B", "proba_C", "A", "B", "C"]
    for finding in FINDINGS:
        np.testing.assert_allclose(_columns(b, f"proba_{finding}"), _columns(a, f"proba_{finding}"), atol=1e-4)
    assert all(r["proba_C"] == "" for r in b)
    # each column is its own sigmoid: the probabilities of a row do not sum to 1
    assert not np.allclose(_columns(a, "proba_A") + _columns(a, "proba_B"), 1.0)


def test_pt2_export_equals_predict_per_finding(ml_run, tmp_path):
    model = tmp_path / "m.pt2"
    assert invoke("export", str(ml_run["run"]), "-o", str(model)).exit_code == 0
    ours, theirs = tmp_path / "run.csv", tmp_path / "model.csv"
    for source, out in ((ml_run["run"], ours), (model, theirs)):
        assert invoke("predict", str(source), str(ml_run["new"]), "-o", str(out), *BASE[-2:]).exit_code == 0
    for finding in ("A", "B"):
        np.testing.assert_allclose(_columns(read_table(theirs), f"proba_{finding}"),
                                   _columns(read_table(ours), f"proba_{finding}"), atol=1e-4)


class _Logit(nn.Module):
    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return torch.logit(p.clamp(1e-6, 1 - 1e-6))


def test_a_multilabel_head_whose_graph_is_a_softmax_is_not_exported(ml_run, tmp_path, monkeypatch):
    real = scorers.head_module
    monkeypatch.setattr(scorers, "head_module", lambda est: nn.Sequential(real(est), _Logit(), scorers.Softmax()))
    with pytest.raises(ExportError, match="must end in its sigmoid"):
        headstart.run_export(ml_run["run"], tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.json").exists()


def test_predict_on_labelled_nih_images_equals_the_record_and_scores_as_evaluation(tmp_path):
    """DATA an NIH folder: its findings become label_<finding> columns (empty where a label is not scored), the
    probabilities of the test images are the record's, and the metrics file holds the per-finding metrics."""
    from tests.data.multilabel_files import make_nih

    root = make_nih(tmp_path / "nih", n_patients=16)
    headstart.run_extract(root, tmp_path / "nih.h5", backbones=["resnet18"], weights="random", image_size=32,
                          workers=0)
    (record,) = headstart.run_heads(tmp_path / "nih.h5", tmp_path / "runs", heads=["logreg"], sweep="quick",
                                    n_boot=20, device="cpu", progress=False)
    out = tmp_path / "n.csv"
    result = headstart.run_predict(tmp_path / "runs" / record.run_id, root, out, n_boot=20, workers=0)
    rows = {r["id"]: r for r in read_table(out)}
    doc = json.loads((tmp_path / "runs" / record.run_id / "record.json").read_text())
    test, names = doc["predictions"]["test"], doc["dataset"]["labels"]
    compared = 0
    for sample, proba, truth, scored in zip(test["ids"], test["proba"], test["y_true"], test["mask"]):
        for j, name in enumerate(names):
            cell = rows[sample][f"label_{name}"]
            assert (cell == "") == (not scored[j]) and (cell == "" or int(cell) == int(truth[j]))
            if proba[j] is not None:
                assert float(rows[sample][f"proba_{name}"]) == pytest.approx(proba[j], abs=1e-6)
                compared += 1
    assert compared > len(test["ids"])  # several trained findings per row
    assert set(result.metrics["per_label"]) == set(names) and result.metrics["auroc"] is not None


def test_a_multilabel_finetune_run_exports_a_sigmoid_graph_equal_to_predict(ml_run, tmp_path):
    """A fine-tuned multi-label network (the whole backbone and its L-output head) exports like a head does: its
    graph ends in one sigmoid per finding, the card names the findings, and the graph's probabilities are the
    run's own on new images."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    record = headstart.run_finetune(ml_run["root"] / "data" / "m.csv", tmp_path / "ft", backbone="resnet18",
                                    weights="random", epochs=1, image_size=32, workers=0, n_boot=20, device="cpu",
                                    labels=FINDINGS, splits_from=ml_run["cache"])
    run = tmp_path / "ft" / record.run_id
    model = tmp_path / "ft.onnx"
    result = invoke("export", str(run), "-o", str(model))
    assert result.exit_code == 0, result.output
    card = read_card(tmp_path / "ft.json")
    assert card["task"] == "multilabel" and card["link"] == "sigmoid" and card["findings"] == FINDINGS
    ours, theirs = tmp_path / "run.csv", tmp_path / "model.csv"
    for source, out in ((run, ours), (model, theirs)):
        result = invoke("predict", str(source), str(ml_run["new"]), "-o", str(out), *BASE[-2:])
        assert result.exit_code == 0, result.output
    a, b = read_table(ours), read_table(theirs)
    trained = [f for f in FINDINGS if a[0][f"proba_{f}"] != ""]
    assert trained, "the fine-tune left every finding out"
    for finding in trained:
        pa, pb = _columns(a, f"proba_{finding}"), _columns(b, f"proba_{finding}")
        assert np.all((pa >= 0) & (pa <= 1))
        np.testing.assert_allclose(pb, pa, atol=1e-4)
