"""`extract` on multi-label data: the raw codes, the task and the finding names reach the cache; bad input writes
nothing; commands without multi-label support yet refuse the cache in one line."""

from __future__ import annotations

import json
import logging

import h5py
import numpy as np
import pytest

from headstart.data.sources import load_source
from tests.data.multilabel_files import CHEXPERT_FINDINGS, NIH_FINDINGS, chexpert_rows, make_nih, write_chexpert
from tests.cli_run import invoke

BASE = ["--weights", "random", "--image-size", "32", "--batch-size", "16", "--workers", "0"]



def test_nih_folder_to_multilabel_cache(tmp_path):
    root = make_nih(tmp_path / "nih", n_patients=10)
    out = tmp_path / "nih.h5"
    r = invoke("extract", str(root), "-o", str(out), "-b", "resnet18", *BASE)
    assert r.exit_code == 0, r.output
    source = load_source(root)
    with h5py.File(out, "r") as f:
        assert f.attrs["task"] == "multilabel"
        assert json.loads(f.attrs["labels"]) == list(NIH_FINDINGS) == json.loads(f.attrs["classes"])
        raw = f["samples/labels"][...]
        ids = [x.decode() for x in f["samples/id"][...]]
        assert raw.dtype == np.int8 and raw.shape == (30, 14)
        assert (f["samples/label"][...] == -1).all()
    by_id = {s.id: s.labels for s in source.samples}
    assert [tuple(row) for row in raw] == [by_id[i] for i in ids]
    info = json.loads(invoke("cache", "info", str(out), "--json").output)
    assert info["task"] == "multilabel" and info["labels"] == list(NIH_FINDINGS)
    text = invoke("cache", "info", str(out)).output
    assert "task: multilabel" in text and "findings: Atelectasis" in text
    assert invoke("cache", "verify", str(out)).exit_code == 0

    # 30 images leave val empty: the heads select by cross-validation over the findings that allow folds
    heads = invoke("heads", str(out), "-o", str(tmp_path / "runs"), "--head", "logreg")
    assert heads.exit_code == 0, heads.output
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/record.json")]
    scored = record["config"]["selection_findings"]
    assert record["dataset"]["task"] == "multilabel" and scored["scored"]
    assert set(scored["scored"]) | set(scored["not_scored"]) == set(NIH_FINDINGS)


def test_chexpert_folder_keeps_uncertain_and_blank(tmp_path):
    rows = chexpert_rows(6)
    root = write_chexpert(tmp_path, rows)
    out = tmp_path / "chx.h5"
    r = invoke("extract", str(root), "-o", str(out), "-b", "resnet18", "--projection", "frontal", *BASE)
    assert r.exit_code == 0, r.output
    with h5py.File(out, "r") as f:
        raw = f["samples/labels"][...]
        assert json.loads(f.attrs["labels"]) == list(CHEXPERT_FINDINGS) and raw.shape == (6, 5)
    assert set(np.unique(raw)) <= {1, 0, -1, -2} and (raw == -1).any() and (raw == -2).any()


@pytest.mark.parametrize("extra, message", [
    (["--labels", "A,Zed"], "--labels column 'Zed' does not exist"),
    (["--labels", "A,B"], "row 3, column 'B': value '7' is not a label"),
])
def test_bad_multilabel_csv_is_one_line_and_writes_nothing(tmp_path, extra, message):
    from tests.data.multilabel_files import image

    for name in ("a.png", "b.png"):
        image(tmp_path / name)
    (tmp_path / "m.csv").write_text("path,A,B\na.png,1,0\nb.png,0,7\n")
    out = tmp_path / "out.h5"
    r = invoke("extract", str(tmp_path / "m.csv"), "-o", str(out), "-b", "resnet18", *extra, *BASE)
    assert r.exit_code == 1 and message in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob("out.h5*"))


def test_nih_shared_sample_extracts(tmp_path, shared_data, caplog):
    out = tmp_path / "nih.h5"
    with caplog.at_level(logging.WARNING):
        r = invoke("extract", str(shared_data / "nih_cxr14_sample"), "-o", str(out), "-b", "resnet18",
                   "--weights", "random", "--image-size", "64", "--workers", "0")
    assert r.exit_code == 0, r.output
    with h5py.File(out, "r") as f:
        assert f["samples/labels"].shape == (528, 14) and f.attrs["task"] == "multilabel"
        groups = [g.decode() for g in f["samples/group"][...]]
        splits = [s.decode() for s in f["samples/split"][...]]
    assert all(len({s for g2, s in zip(groups, splits) if g2 == g}) == 1 for g in set(groups))


def test_finetune_on_too_little_multilabel_data_fails_in_one_line(tmp_path):
    root = make_nih(tmp_path / "nih", n_patients=4)
    r = invoke("finetune", str(root), "-o", str(tmp_path / "runs"), "-b", "resnet18", "--weights", "random",
               "--epochs", "1", "--image-size", "32")
    errors = [line for line in r.output.splitlines() if line.startswith("Error")]
    assert r.exit_code == 1 and len(errors) == 1 and "val split(s) of the data set are empty" in errors[0]
