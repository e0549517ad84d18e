"""`compare` embeds every audit.json under RUNS (`headstart audit CACHE -o RUNS/audit`), from the JSON alone."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from click.testing import CliRunner

from headstart.cli import cli
from headstart.evaluation.report.audit import audit_blocks
from headstart.evaluation.report.document import Paragraph, Table
from headstart.studies.audit import CHECKS
from tests.report.conftest import write_study
from tests.studies.audit.caches import table_cache


def test_compare_embeds_the_audit_written_under_runs(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_study(runs)
    cache = table_cache(tmp_path / "c.h5", labels=[0, 1] * 20, splits=["train"] * 24 + ["val"] * 8 + ["test"] * 8)
    audited = CliRunner().invoke(cli, ["audit", str(cache), "-o", str(runs / "audit"), "--shuffle-repeats", "2"])
    assert audited.exit_code == 0, audited.output
    result = CliRunner().invoke(cli, ["compare", str(runs), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    markdown = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "## Shortcut and leakage audit: c.h5" in markdown and f"From {runs / 'audit' / 'audit.json'}." in markdown
    doc = json.loads((runs / "audit" / "audit.json").read_text(encoding="utf-8"))
    for name in CHECKS:  # every check's line, as the audit itself wrote it
        assert f"| {name} |" in markdown and doc["checks"][name]["message"].split(";")[0] in markdown
    assert "Shortcut and leakage audit" in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    [entry] = summary["audits"]
    assert entry["path"] == str(runs / "audit" / "audit.json") and set(entry["checks"]) == set(CHECKS)


def test_unreadable_or_foreign_audit_json_is_skipped_with_a_warning(tmp_path: Path, caplog) -> None:
    runs = tmp_path / "runs"
    write_study(runs)
    (runs / "junk").mkdir()
    (runs / "junk" / "audit.json").write_text("{not json", encoding="utf-8")
    (runs / "other").mkdir()
    (runs / "other" / "audit.json").write_text('{"tool": "something else"}', encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="headstart.evaluation.report.audit"):
        result = CliRunner().invoke(cli, ["compare", str(runs), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "Shortcut and leakage audit" not in (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert caplog.text.count("skipping unreadable audit") == 2
    assert json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))["audits"] == []


def test_nulls_and_missing_parts_render_as_dashes() -> None:
    doc = {"cache": "/x/c.h5", "checks": {"near_duplicates": {"flagged": True, "message": "1 pair"}},
           "near_duplicates": [{"id_a": "a", "id_b": "b", "split_a": "train", "split_b": "test", "similarity": None,
                                "hamming": None, "method": "embedding"}],
           "split_shift": {"class_balance": {"train": {"n": 4, "NORMAL": 0.5, "PNEUMONIA": None}}},
           "fix": {"published": True, "moves": [{"id": "b", "group": 1, "from": "test", "to": "train"}],
                   "n_groups": 1, "splits": {"train": 5}}}
    blocks = audit_blocks(doc, level=2)
    tables = [b for b in blocks if isinstance(b, Table)]
    assert tables[1].rows == [["a", "train", "b", "test", "-", "-", "embedding"]]
    assert tables[2].rows == [["train", "4", "50.0%", "-"]]
    assert tables[3].rows == [["b", "1", "test", "train"]]
    assert any(isinstance(b, Paragraph) and b.text.startswith("Published: 1 image(s) moved") for b in blocks)
