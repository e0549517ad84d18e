"""`headstart compare`: tables, break-even, paired tests and the three output files, plus bad input."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from headstart.cli import cli
from headstart.evaluation.records import read_records, write_record
from headstart.evaluation.report.comparisons import compare_runs
from headstart.evaluation.report.summary import break_even, build_rows
from tests.report.conftest import make_record, write_study


def _strict_json(path: Path) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"{path} holds {name}; expected strict JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    """One compare run shared by the read-only assertions below (rendering plots costs seconds here)."""
    root = tmp_path_factory.mktemp("study")
    runs = root / "runs"
    write_study(runs)
    out = root / "out"
    result = CliRunner().invoke(cli, ["compare", str(runs), "-o", str(out)])
    return runs, out, result


def test_compare_writes_markdown_html_and_json(report) -> None:
    _, out, result = report
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert f"report: {out / 'report.html'}" in result.output
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "| strategy | backbone | head |" in markdown
    links = re.findall(r"!\[[^\]]*\]\((plots/[^)]+\.png)\)", markdown)
    assert {"plots/roc.png", "plots/confusion.png", "plots/timing.png", "plots/cost_accuracy.png"} <= set(links)
    histories = [link for link in links if link.startswith("plots/history_")]
    assert sorted(histories) == ["plots/history_densenet121.png", "plots/history_resnet18.png"]  # a grid per backbone
    for link in links:
        assert (out / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count('<img src="data:image/png;base64,') == len(links)
    assert not re.search(r'(src|href)="(https?:|//|plots/)', page)  # self-contained: nothing to fetch


def test_summary_rows_aggregate_seeds(report) -> None:
    _, out, _ = report
    summary = _strict_json(out / "summary.json")
    (dataset,) = summary["datasets"]
    rows = {row["key"]: row for row in dataset["rows"]}
    assert len(rows) == 6  # 2 backbones x (logreg, linear, fine-tune)
    logreg = rows["cached-head_resnet18_logreg"]
    assert logreg["seeds"] == [0, 1] and logreg["ci_run_id"] == "cached-head_resnet18_logreg_s0"
    records = {r.run_id: r for r in read_records(out.parent / "runs")}
    aurocs = [records[f"cached-head_resnet18_logreg_s{s}"].metrics["test"]["auroc"] for s in (0, 1)]
    assert logreg["test"]["auroc"]["mean"] == pytest.approx(sum(aurocs) / 2)
    assert logreg["test"]["auroc"]["std"] == pytest.approx(abs(aurocs[0] - aurocs[1]) / math.sqrt(2))
    assert logreg["test"]["auroc"]["ci"] == records["cached-head_resnet18_logreg_s0"].metrics["test"]["auroc_ci"]
    finetune = rows["finetune_resnet18_freeze-none-64px"]
    assert finetune["test"]["auroc"]["std"] is None  # one seed: no spread, and NaN is written as null


def test_break_even_numbers(report) -> None:
    _, out, _ = report
    costs = {c["backbone"]: c for c in _strict_json(out / "summary.json")["datasets"][0]["break_even"]}
    resnet = costs["resnet18"]
    h = (0.5 + 0.55 + 1.5 + 1.65) / 4  # the four cached-head runs of resnet18 (see conftest timings)
    assert resnet["head_train_seconds_mean"] == pytest.approx(h)
    assert resnet["heads_per_finetune"] == pytest.approx(240.0 / h)
    assert resnet["heads_within_one_finetune"] == math.floor((240.0 - 12.0) / h)
    assert resnet["break_even_experiments"] == math.ceil(12.0 / (240.0 - h))
    assert costs["densenet121"]["extract_seconds"] == 30.0


def test_break_even_never_when_a_head_costs_more_than_a_fine_tune() -> None:
    head = make_record(strategy="cached-head", backbone="resnet18", head="logreg", seed=0, strength=1.0)
    finetune = make_record(strategy="finetune", backbone="resnet18", head=None, seed=0, strength=1.0)
    head.timing["train_seconds"] = 500.0
    (cost,) = break_even(build_rows([head, finetune]))
    assert cost["break_even_experiments"] is None
    assert cost["heads_within_one_finetune"] == 0


def test_paired_tests_pick_best_head_by_val(report) -> None:
    _, out, _ = report
    tests = {t["backbone"]: t for t in _strict_json(out / "summary.json")["datasets"][0]["paired_tests"]}
    assert set(tests) == {"resnet18", "densenet121"}
    for backbone, test in tests.items():
        assert test["a"] == f"cached-head_{backbone}_linear_s0"  # linear separates better in conftest
        assert test["b"] == f"finetune_{backbone}_freeze-none-64px_s0"
        assert test["n"] == 80 and test["note"] is None
        assert 0.0 <= test["delong"]["p_value"] <= 1.0
        assert test["mcnemar"]["b"] + test["mcnemar"]["c"] <= 80


def test_paired_tests_align_by_id_and_skip_different_test_sets() -> None:
    a = make_record(strategy="cached-head", backbone="resnet18", head="linear", seed=0, strength=1.0)
    b = make_record(strategy="finetune", backbone="resnet18", head=None, seed=0, strength=1.0)
    shuffled = make_record(strategy="finetune", backbone="resnet18", head=None, seed=0, strength=1.0)
    order = list(range(len(shuffled.predictions["test"]["ids"])))[::-1]
    for key in ("ids", "y_true", "proba"):
        shuffled.predictions["test"][key] = [shuffled.predictions["test"][key][i] for i in order]
    assert compare_runs(a, shuffled)["delong"] == compare_runs(a, b)["delong"]

    b.predictions["test"]["ids"] = [f"other/{i}" for i in range(len(order))]
    result = compare_runs(a, b)
    assert result["delong"] is None and result["mcnemar"] is None
    assert "test ids differ" in result["note"]


def test_default_output_is_runs_report(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for record in (make_record(strategy="cached-head", backbone="resnet18", head="logreg", seed=0, strength=1.0),
                   make_record(strategy="finetune", backbone="resnet18", head=None, seed=0, strength=1.0)):
        write_record(runs, record)
    result = CliRunner().invoke(cli, ["compare", str(runs)])
    assert result.exit_code == 0, result.output
    assert (runs / "report" / "report.html").is_file()
    assert (runs / "report" / "summary.json").is_file()


@pytest.mark.parametrize("make_folder", [lambda p: p, lambda p: p / "missing"], ids=["empty", "missing"])
def test_no_records_is_one_line_error(tmp_path: Path, make_folder) -> None:
    (tmp_path / "not-a-run").mkdir()
    result = CliRunner().invoke(cli, ["compare", str(make_folder(tmp_path))])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "headstart heads" in lines[0]


def test_corrupt_record_is_skipped_with_a_warning(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for record in (make_record(strategy="cached-head", backbone="resnet18", head="logreg", seed=0, strength=1.0),
                   make_record(strategy="finetune", backbone="resnet18", head=None, seed=0, strength=1.0)):
        write_record(runs, record)
    (runs / "broken").mkdir()
    (runs / "broken" / "record.json").write_text('{"run_id": "broken", "strat', encoding="utf-8")
    result = CliRunner().invoke(cli, ["compare", str(runs)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    warnings = [line for line in result.output.splitlines() if "skipping unreadable record" in line]
    assert len(warnings) == 1 and "broken" in warnings[0]
    assert "2 runs, 1 data set(s)" in result.output


def test_records_from_different_datasets_get_their_own_sections(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for manifest_hash, prefix in (("a" * 64, ""), ("b" * 64, "other-")):
        for record in (make_record(strategy="cached-head", backbone="resnet18", head="logreg", seed=0, strength=1.0,
                                   manifest_hash=manifest_hash),
                       make_record(strategy="finetune", backbone="resnet18", head=None, seed=0, strength=1.0,
                                   manifest_hash=manifest_hash)):
            record.run_id = prefix + record.run_id
            write_record(runs, record)
    result = CliRunner().invoke(cli, ["compare", str(runs)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "2 different data sets" in result.output  # the log line
    markdown = (runs / "report" / "report.md").read_text(encoding="utf-8")
    assert "2 different data sets" in markdown
    assert "## Data set aaaaaaaa" in markdown and "## Data set bbbbbbbb" in markdown
    summary = _strict_json(runs / "report" / "summary.json")
    assert [d["n_records"] for d in summary["datasets"]] == [2, 2]
    for dataset in summary["datasets"]:  # paired tests never cross data sets
        (test,) = dataset["paired_tests"]
        assert test["a"].startswith("other-") == test["b"].startswith("other-")
    assert {"plots/aaaaaaaa_roc.png", "plots/bbbbbbbb_roc.png"} <= set(
        summary["datasets"][0]["plots"] + summary["datasets"][1]["plots"])


def test_unknown_select_metric_is_a_usage_error(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_record(runs, make_record(strategy="finetune", backbone="resnet18", head=None, seed=0, strength=1.0))
    result = CliRunner().invoke(cli, ["compare", str(runs), "--select-metric", "vibes"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output and "vibes" in result.output


def test_sets_of_one_backbone_get_their_own_labelled_rows() -> None:
    """Several (layer, pool) sets of one backbone are separate rows, told apart by the set's tap in the label."""
    from dataclasses import replace

    from headstart.evaluation.records import make_run_id
    from headstart.evaluation.report.summary import build_rows

    base = make_record(strategy="cached-head", backbone="resnet18", head="logreg", seed=0, strength=1.0)
    records = [replace(base, run_id=make_run_id("cached-head", name, "logreg", 0), config={"feature_set": name})
               for name in ("resnet18", "resnet18:layer3:gem")]
    assert sorted(row.label for row in build_rows(records)) == ["logreg", "logreg (layer3:gem)"]
