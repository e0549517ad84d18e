"""`headstart audit`: one line per check, --json, -o, --strict, and clear lines (never a traceback) on caches
the checks cannot fully use: before metadata, damaged metadata, a single split, a one-class split."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from headstart.cli import cli
from headstart.studies.audit import CHECKS
from tests.studies.audit.caches import table_cache

FAST = ["--shuffle-repeats", "2"]


def invoke(*args: str):
    result = CliRunner().invoke(cli, ["audit", *args])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def lines(result) -> dict[str, str]:
    """check name -> its terminal line."""
    out = {}
    for line in result.output.splitlines():
        for name in CHECKS:
            if f"] {name}:" in line:
                out[name] = line
    return out


def test_one_line_per_check_and_exit_0_when_flagged(planted):
    cache, _, _, _ = planted
    result = invoke(str(cache), *FAST)
    assert result.exit_code == 0, result.output
    found = lines(result)
    assert set(found) == set(CHECKS)
    assert "[FLAG] metadata_baseline: image metadata alone predicts the label" in found["metadata_baseline"]
    assert found["near_duplicates"].startswith("[FLAG]")


def test_strict_exits_1_when_flagged(planted):
    result = invoke(str(planted[0]), "--strict", *FAST)
    assert result.exit_code == 1 and "--strict" in result.stderr


def test_strict_exits_0_when_nothing_is_flagged(planted, monkeypatch):
    from headstart.studies.audit import runner
    from headstart.studies.audit.result import CheckResult

    def quiet(path, *, config, on_result, **_):
        report = runner.AuditReport(cache=str(path), feature_set="x", n_samples=1, splits={"train": 1})
        for name in CHECKS:
            report.checks.append(CheckResult(name, False, "fine"))
            on_result(report.checks[-1])
        return report

    monkeypatch.setattr("headstart.studies.audit.run_audit", quiet)
    result = invoke(str(planted[0]), "--strict")
    assert result.exit_code == 0 and "0 of 6 checks flagged" in result.output


def test_json_only_on_stdout_lines_on_stderr(planted):
    result = invoke(str(planted[0]), "--json", *FAST)
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["metadata_baseline"]["auroc"] > 0.9 and len(doc["metadata_baseline"]["auroc_ci"]) == 2
    assert doc["metadata_baseline"]["features"]
    pair = doc["near_duplicates"][0]
    assert {"id_a", "id_b", "split_a", "split_b", "similarity", "method"} <= set(pair)
    for key in ("patient_leakage", "label_shuffle", "split_shift", "test_power"):
        assert "flagged" in doc[key] and "message" in doc[key]
    assert set(lines(result)) == set(CHECKS) and all(name not in result.stdout.split("{")[0] for name in CHECKS)


def test_output_dir_writes_md_html_json(planted, tmp_path):
    result = invoke(str(planted[0]), "-o", str(tmp_path / "audit"), *FAST)
    assert result.exit_code == 0
    md = (tmp_path / "audit" / "audit.md").read_text()
    assert "Near-duplicate pairs across splits" in md and "metadata_baseline" in md
    assert "<table>" in (tmp_path / "audit" / "audit.html").read_text()
    assert json.loads((tmp_path / "audit" / "audit.json").read_text())["flagged"] is True


def test_output_that_is_a_file_is_a_usage_error(planted, tmp_path):
    (tmp_path / "f").write_text("x")
    result = invoke(str(planted[0]), "-o", str(tmp_path / "f"))
    assert result.exit_code == 2 and "is a file" in result.output


def test_cache_from_before_metadata(planted):
    result = invoke(str(planted[1]), *FAST)
    assert result.exit_code == 0
    line = lines(result)["metadata_baseline"]
    assert "[SKIP]" in line and "no /samples/meta" in line and "re-extract" in line


def test_damaged_metadata(planted, tmp_path):
    cache = tmp_path / "damaged.h5"
    shutil.copy(planted[0], cache)
    with h5py.File(cache, "a") as f:
        del f["samples/meta/width"]
        f["samples/meta/width"] = np.arange(3)  # wrong length
    result = invoke(str(cache), *FAST)
    assert result.exit_code == 0
    line = lines(result)["metadata_baseline"]
    assert "[SKIP]" in line and "/samples/meta/width has shape (3,)" in line


def test_single_split_cache(tmp_path):
    n = 40
    cache = table_cache(tmp_path / "one.h5", labels=[i % 2 for i in range(n)], splits=["train"] * n)
    result = invoke(str(cache), *FAST)
    assert result.exit_code == 0, result.output
    found = lines(result)
    assert "single split" in found["near_duplicates"]
    assert "no test split" in found["label_shuffle"] and "no test split" in found["test_power"]
    assert "[SKIP]" in found["split_shift"]
    assert "no patient groups" in found["patient_leakage"]


def test_one_class_test_split(tmp_path):
    n = 60
    splits = ["train"] * 40 + ["val"] * 10 + ["test"] * 10
    labels = [i % 2 for i in range(50)] + [0] * 10
    groups = [f"p{i // 2}" for i in range(n)]
    cache = table_cache(tmp_path / "oneclass.h5", labels=labels, splits=splits, groups=groups)
    result = invoke(str(cache), *FAST)
    assert result.exit_code == 0, result.output
    found = lines(result)
    for name in ("label_shuffle", "test_power"):
        assert "[SKIP]" in found[name] and "test split holds one class only (NORMAL)" in found[name]
    assert found["patient_leakage"].startswith("[  ok]")


@pytest.mark.parametrize("args, message", [(["-b", "nope"], "feature set 'nope' is not in"),
                                           ([], "does not exist")])
def test_bad_input_is_one_line_exit_1(planted, tmp_path, args, message):
    target = str(planted[0]) if args else str(tmp_path / "missing.h5")
    result = invoke(target, *args)
    assert result.exit_code == 1 and message in result.output
