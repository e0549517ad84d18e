"""The prediction table: strict columns, unlabelled folders, JSON lines, metrics only when labels are known."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from headstart.apply.output import columns, render, table
from tests.apply.conftest import head_run, read_table
from tests.reliability.conftest import invoke


def test_columns_and_cells_are_the_contract():
    proba = np.array([[0.2, 0.8], [np.nan, np.nan], [0.9, 0.1]])
    rows = table(["a.png", "b.png", "c.png"], proba, classes=["NORMAL", "PNEUMONIA"], threshold=0.85,
                 labels=np.array([1, 0, -1]), errors=["", "b.png: cannot decode", ""])
    header = columns(["NORMAL", "PNEUMONIA"], labelled=True, reasons=True)
    assert header == ["id", "proba_NORMAL", "proba_PNEUMONIA", "prediction", "label", "reason"]
    assert [r["prediction"] for r in rows] == ["NORMAL", None, "NORMAL"]  # 0.8 < the frozen threshold 0.85
    text = render(rows, header, "csv").decode().splitlines()
    assert text[1] == "a.png,0.2,0.8,NORMAL,PNEUMONIA,"
    assert text[2] == "b.png,,,,NORMAL,b.png: cannot decode"
    assert text[3] == "c.png,0.9,0.1,NORMAL,,"
    lines = [json.loads(line) for line in render(rows, header, "jsonl").decode().splitlines()]
    assert lines[1] == {"id": "b.png", "proba_NORMAL": None, "proba_PNEUMONIA": None, "prediction": None,
                        "label": "NORMAL", "reason": "b.png: cannot decode"}
    multi = table(["x"], np.array([[0.2, 0.5, 0.3]]), classes=["a", "b", "c"], threshold=None, labels=None, errors=None)
    assert multi[0]["prediction"] == "b" and "label" not in multi[0] and "reason" not in multi[0]


def test_unlabelled_folder_of_images(runs, tmp_path):
    """The usual case: a flat folder of new images. No labels, so no label column and no metrics."""
    new = tmp_path / "new_images"
    new.mkdir()
    for path in sorted(runs["data"].rglob("*.jpeg"))[:5]:
        shutil.copy(path, new / path.name)
    out = tmp_path / "preds.csv"
    result = invoke("predict", str(head_run(runs, "float16", "knn")), str(new), "-o", str(out), "--workers", "0")
    assert result.exit_code == 0, result.output
    rows = read_table(out)
    assert list(rows[0]) == ["id", "proba_NORMAL", "proba_PNEUMONIA", "prediction"]
    assert sorted(r["id"] for r in rows) == sorted(p.name for p in new.iterdir())
    assert all(abs(float(r["proba_NORMAL"]) + float(r["proba_PNEUMONIA"]) - 1) < 1e-5 for r in rows)
    assert not (tmp_path / "preds.metrics.json").exists() and "metrics" not in result.output


def test_labelled_data_prints_and_writes_metrics_as_jsonl(runs, tmp_path):
    out = tmp_path / "preds.jsonl"
    result = invoke("predict", str(runs["finetune"]), str(runs["data"] / "test"), "-o", str(out), "--format", "jsonl",
                    "--workers", "0", "--n-boot", "20", "--batch-size", "5")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert set(lines[0]) == {"id", "proba_NORMAL", "proba_PNEUMONIA", "prediction", "label"}
    assert lines[0]["id"].startswith(("NORMAL/", "PNEUMONIA/"))  # relative to DATA (here the test folder)
    summary = json.loads((tmp_path / "preds.metrics.json").read_text())
    assert summary["n"] == len(lines) and len(summary["metrics"]["auroc_ci"]) == 2
    assert "auroc" in result.output and "[" in result.output  # the value with its interval


def test_class_folders_that_are_not_the_runs_classes_predict_without_labels(runs, tmp_path):
    data = tmp_path / "batches"
    for i, path in enumerate(sorted(runs["data"].rglob("*.jpeg"))[:4]):
        (data / f"batch{i % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, data / f"batch{i % 2}" / path.name)
    out = tmp_path / "p.csv"
    result = invoke("predict", str(head_run(runs, "float32", "logreg")), str(data), "-o", str(out), "--workers", "0")
    assert result.exit_code == 0, result.output
    assert "not among the run's classes" in result.output
    assert "label" not in read_table(out)[0] and len(read_table(out)) == 4


def test_multilabel_columns_and_cells():
    """Per finding: its probability, its decision at its own frozen threshold (0.5 where val had one class),
    its label as evaluation scores it; an untrained finding and a skipped row are empty cells."""
    from headstart.apply.output import multilabel_table

    proba = np.array([[0.7, 0.4, np.nan], [np.nan, np.nan, np.nan], [0.2, 0.6, np.nan]])
    rows = multilabel_table(["a", "b", "c"], proba, findings=["Edema", "Mass", "Hernia"], thresholds=[0.65, None, None],
                            labels=np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]]),
                            known=np.array([[True, False, True], [True, True, True], [True, True, False]]),
                            errors=["", "b: cannot decode", ""])
    header = columns(["Edema", "Mass", "Hernia"], labelled=True, reasons=True, multilabel=True)
    assert header == ["id", "proba_Edema", "proba_Mass", "proba_Hernia", "Edema", "Mass", "Hernia", "label_Edema",
                      "label_Mass", "label_Hernia", "reason"]
    text = render(rows, header, "csv").decode().splitlines()
    assert text[1] == "a,0.7,0.4,,1,0,,1,,0,"  # Edema 0.7 >= 0.65; Mass 0.4 < 0.5; Mass's label not scored
    assert text[2] == "b,,,,,,,0,1,0,b: cannot decode"
    assert text[3] == "c,0.2,0.6,,0,1,,0,0,,"


def test_a_finding_named_like_a_column_is_refused():
    from headstart.errors import DataError

    with pytest.raises(DataError, match="finding name"):
        columns(["id", "Mass"], labelled=False, reasons=False, multilabel=True)
    with pytest.raises(DataError, match="label_Mass"):
        columns(["Mass", "label_Mass"], labelled=True, reasons=False, multilabel=True)


def test_multiclass_predict_writes_a_probability_column_per_class_equal_to_the_record(tmp_path):
    """Three classes: one proba_<class> per class (the record's test probabilities for the same rows), the
    argmax as `prediction`, and the metrics file's per-class AUROC list."""
    import headstart
    from tests.heads.synthetic_cache import make_cache

    cache = make_cache(tmp_path / "mc.h5", n_classes=3)
    (record,) = headstart.run_heads(cache, tmp_path / "runs", heads=["logreg"], sweep="quick", n_boot=20,
                                    device="cpu", progress=False)
    out = tmp_path / "p.csv"
    headstart.run_predict(tmp_path / "runs" / record.run_id, None, out, cache=cache, split="test", n_boot=20)
    rows = read_table(out)
    assert list(rows[0]) == ["id", "proba_class0", "proba_class1", "proba_class2", "prediction", "label"]
    test = json.loads((tmp_path / "runs" / record.run_id / "record.json").read_text())["predictions"]["test"]
    assert [r["id"] for r in rows] == test["ids"]
    got = np.array([[float(r[f"proba_class{k}"]) for k in range(3)] for r in rows])
    np.testing.assert_allclose(got, np.array(test["proba"]), atol=1e-8)
    assert [r["prediction"] for r in rows] == [f"class{k}" for k in got.argmax(axis=1)]
    summary = json.loads((tmp_path / "p.metrics.json").read_text())
    assert len(summary["metrics"]["auroc_per_class"]) == 3
