"""`audit` on a multi-label cache: the metadata baseline per finding (a size shortcut planted in one finding
only), the shuffle floor over the findings, leakage as for any cache, the power estimate skipped with its reason."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from headstart.cli import cli
from headstart.studies.audit.config import AuditConfig
from headstart.studies.audit.runner import run_audit

BASE = ["--weights", "random", "--image-size", "32", "--batch-size", "32", "--workers", "0"]


@pytest.fixture(scope="module")
def ml_cache(tmp_path_factory):
    """120 noise images in a manifest with findings A, B, C: A's positives are stored at 72 px, everything else at
    48 px (a metadata shortcut in A alone); B is random; C is uncertain (-1) in a quarter of the rows."""
    root = tmp_path_factory.mktemp("ml_audit")
    rng = np.random.default_rng(0)
    lines = ["path,A,B,C,split,group"]
    for i in range(120):
        a, b, c = int(rng.random() < 0.4), int(rng.random() < 0.4), int(rng.random() < 0.5)
        c = -1 if i % 4 == 0 else c
        size = 72 if a else 48
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(root / f"img{i:03d}.png")
        split = ("train", "train", "train", "val", "test")[i % 5] if i < 100 else "test"
        lines.append(f"img{i:03d}.png,{a},{b},{c},{split},p{i}")
    (root / "m.csv").write_text("\n".join(lines) + "\n")
    out = root / "ml.h5"
    r = CliRunner().invoke(cli, ["extract", str(root / "m.csv"), "-o", str(out), "-b", "resnet18",
                                 "--labels", "A,B,C", *BASE])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def report(ml_cache):
    return run_audit(ml_cache, config=AuditConfig(n_boot=200, shuffle_repeats=3), progress=False)


def test_metadata_baseline_runs_per_finding_and_flags_the_shortcut_finding(report):
    meta = report.check("metadata_baseline")
    assert not meta.skipped, meta.message
    per = meta.data["per_label"]
    assert set(per) == {"A", "B", "C"}
    assert per["A"]["flagged"] and per["A"]["auroc"] > 0.95  # size alone tells A apart
    assert not per["B"]["flagged"] and per["B"]["auroc"] < 0.8
    assert meta.flagged and meta.data["flagged_findings"] == ["A"] and "A (AUROC" in meta.message
    scored = [per[f]["auroc"] for f in "ABC" if per[f]["auroc"] is not None]
    assert meta.data["auroc"] == pytest.approx(np.mean(scored))
    # C's uncertain rows are never scored: its test rows are the known ones only
    assert per["C"]["n_test"] < per["B"]["n_test"]


def test_shuffle_and_leakage_run_on_the_multilabel_task(report):
    shuffle = report.check("label_shuffle")
    assert not shuffle.skipped, shuffle.message
    assert set(shuffle.data["per_label"]) == {"A", "B", "C"} and len(shuffle.data["aurocs"]) == 3
    floors = np.array([shuffle.data["per_label"][f]["aurocs"] for f in "ABC"])
    assert np.allclose(shuffle.data["aurocs"], floors.mean(axis=0))  # the macro floor of each repeat
    assert "macro AUROC" in shuffle.message
    assert not report.check("patient_leakage").skipped and not report.check("near_duplicates").skipped
    shift = report.check("split_shift")
    assert set(shift.data["class_balance"]["train"]) == {"n", "A", "B", "C"}
    assert shift.data["domain_auroc"] is not None
    assert report.check("test_power").skipped and "multi-label" in report.check("test_power").skipped


def test_audit_json_and_report_of_a_multilabel_cache(ml_cache, tmp_path):
    r = CliRunner().invoke(cli, ["audit", str(ml_cache), "--json", "--shuffle-repeats", "2", "-o", str(tmp_path)])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert set(doc["metadata_baseline"]["per_label"]) == {"A", "B", "C"}
    assert doc["metadata_baseline"]["per_label"]["A"]["flagged"] is True
    report = (tmp_path / "audit.md").read_text()
    table = report.split("Per finding (multi-label)")[1]
    rows = [line for line in table.splitlines() if line.startswith(("| A |", "| B |", "| C |"))]
    assert len(rows) == 3 and "FLAGGED" in rows[0] and "FLAGGED" not in rows[1]
