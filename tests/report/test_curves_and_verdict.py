"""`compare` leads with the answer: the verdict, learning curves with fine-tunes overlaid, the crossover, the
cost-accuracy chart, history grids, and RUNS folders holding only curves, only records, or both."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from headstart.cli import cli
from headstart.evaluation.report.cost import pareto_front
from headstart.evaluation.report.curves import crossover, finetune_points
from tests.report.conftest import write_curve, write_study, write_subsampled_finetunes


def _compare(runs: Path) -> tuple[str, dict]:
    result = CliRunner().invoke(cli, ["compare", str(runs)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    markdown = (runs / "report" / "report.md").read_text(encoding="utf-8")
    return markdown, json.loads((runs / "report" / "summary.json").read_text(encoding="utf-8"))


def _sections(markdown: str) -> list[str]:
    return re.findall(r"^## (.+)$", markdown, flags=re.MULTILINE)


def _verdict(markdown: str) -> str:
    return markdown.split("## Verdict\n\n", 1)[1].split("\n\n## ", 1)[0]


def _sentences(text: str) -> int:
    return len(re.findall(r"[.!?](?:\s|$)", re.sub(r"\d\.\d", "0", text)))


def test_curves_only(tmp_path):
    runs = tmp_path / "runs"
    curve = write_curve(runs)
    markdown, summary = _compare(runs)
    sections = _sections(markdown)
    assert sections[0] == "Verdict" and sections[-1] == "Definitions"
    verdict = _verdict(markdown)
    assert 3 <= _sentences(verdict) <= 5, verdict
    assert f"plateaus at {curve['fit']['plateau']:.3f}" in verdict and "95% of that" in verdict
    assert "![" in markdown and "plots/learning_curve.png" in markdown
    (dataset,) = summary["datasets"]
    assert dataset["n_records"] == 0 and dataset["curves"][0]["fit"]["plateau"] == pytest.approx(curve["fit"]["a"])
    assert (runs / "report" / "plots" / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_records_only_still_get_a_verdict_and_the_cost_chart(tmp_path):
    runs = tmp_path / "runs"
    write_study(runs)
    markdown, summary = _compare(runs)
    sections = _sections(markdown)
    assert sections[0] == "Verdict" and sections[-1] == "Definitions" and "Data set: NORMAL, PNEUMONIA" in sections
    verdict = _verdict(markdown)
    assert 3 <= _sentences(verdict) <= 5, verdict
    assert "The best run by validation auroc is" in verdict and "DeLong p" in verdict and "x the head's" in verdict
    assert "learning_curve" not in markdown and "plots/cost_accuracy.png" in markdown
    points = summary["datasets"][0]["cost_accuracy"]
    assert {(p["backbone"], p["strategy"]) for p in points} == {
        (b, s) for b in ("resnet18", "densenet121") for s in ("cached-head", "finetune")}
    head = next(p for p in points if p["backbone"] == "resnet18" and p["strategy"] == "cached-head")
    assert head["seconds"] == pytest.approx(12.0 + (1.5 + 1.65) / 2)  # extraction + the best head's train seconds
    assert head["gflops"] == pytest.approx(1.814, abs=0.01)  # torchvision's metadata for resnet18
    assert any(p["pareto"] for p in points)


def test_curves_and_fine_tunes_share_the_axes_and_the_crossover_is_reported(tmp_path):
    runs = tmp_path / "runs"
    write_study(runs)
    write_curve(runs)
    write_subsampled_finetunes(runs)  # weak at k=8, far above the head at 50%
    markdown, summary = _compare(runs)
    (dataset,) = summary["datasets"]
    (curve,) = dataset["curves"]
    (cross,) = curve["crossovers"]
    assert cross["size"] == "50%" and cross["n"] == pytest.approx(180.5)
    assert "lies above the head's" in _verdict(markdown) and "from n = 180 (50%) on" in markdown
    sizes = {p["size"] for p in dataset["finetune_points"]}
    assert sizes == {"k=8", "50%"}  # the study's full fine-tunes predate `n_train` in records: no x to plot them at
    assert "plots/learning_curve.png" in markdown and "plots/history_resnet18.png" in markdown
    assert "(freeze none, 64 px, train k=8)" in markdown  # a fine-tune on a draw says so in its row


def test_crossover_none_within_the_measured_sizes(tmp_path):
    runs = tmp_path / "runs"
    curve = write_curve(runs, plateau=0.99)
    records = write_subsampled_finetunes(runs, sizes=(("k=8", 16, 0.1), ("50%", 180, 0.3)))
    points = finetune_points(records, "auroc")
    (cross,) = crossover({**curve, "path": "x"}, points)
    assert cross["n"] is None and "no crossover within the measured sizes (k=8, 50%)" in cross["text"]
    other = crossover({**curve, "backbone": "densenet121"}, points)
    assert other == []  # fine-tunes of another backbone are not compared with this curve


def test_pareto_front_keeps_only_undominated_points():
    points = [(10.0, 0.80), (100.0, 0.90), (50.0, 0.85), (200.0, 0.88), (10.0, 0.79), (float("nan"), 0.99)]
    assert pareto_front(points) == {0, 1, 2}


def test_an_unreadable_curve_is_skipped_with_a_warning(tmp_path):
    runs = tmp_path / "runs"
    write_curve(runs)
    (runs / "curve_broken_logreg").mkdir()
    (runs / "curve_broken_logreg" / "curve.json").write_text('{"format": "headstart-curve", "summ', encoding="utf-8")
    result = CliRunner().invoke(cli, ["compare", str(runs)])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "skipping unreadable curve" in line]
    assert len(warnings) == 1 and "curve_broken_logreg" in warnings[0]
    assert "0 runs, 1 learning curve(s), 1 data set(s)" in result.output


def test_the_cheapest_run_within_the_interval_is_chosen_on_val_never_on_test():
    """A cheap run that only looks good on test is not recommended; one that matches the best on val is, whatever
    its test AUROC turns out to be (that is the outcome, reported, not a selection criterion)."""
    from headstart.evaluation.report.summary import Row
    from headstart.evaluation.report.verdict import cheapest_match
    from tests.report.conftest import make_record

    def row(name: str, *, val: float, test: float, seconds: float) -> Row:
        record = make_record(strategy="cached-head", backbone="resnet18", head="logreg", seed=0, strength=1.0)
        record.metrics["val"].update(auroc=val, auroc_ci=[val - 0.05, min(1.0, val + 0.05)])
        record.metrics["test"].update(auroc=test, auroc_ci=[test - 0.05, min(1.0, test + 0.05)])
        record.timing.update(extract_seconds=seconds, train_seconds=0.0)
        return Row(key=name, strategy="cached-head", backbone="resnet18", head=name, runs=[record])

    best = row("best", val=0.90, test=0.90, seconds=100.0)
    lucky_on_test = row("lucky", val=0.70, test=0.95, seconds=1.0)  # test-picked before: outside best's val interval
    matches_on_val = row("match", val=0.87, test=0.80, seconds=10.0)
    assert cheapest_match([best, lucky_on_test, matches_on_val], best) is matches_on_val
    assert cheapest_match([best, lucky_on_test], best) is None


def test_reports_name_the_interval_method_and_the_patients(tmp_path):
    """Records made with patient groups: the report says the intervals resampled patients, how many, and the paired
    test is the clustered DeLong over them (the verdict too); without groups it says images."""
    from headstart.evaluation.records import write_record
    from tests.report.conftest import N_TEST, make_record

    groups = [f"p{i // 4}" for i in range(N_TEST)]  # 20 patients of 4 test images
    runs = tmp_path / "runs"
    for strategy, head, strength in (("cached-head", "logreg", 1.2), ("finetune", None, 1.8)):
        write_record(runs, make_record(strategy=strategy, backbone="resnet18", head=head, seed=0, strength=strength,
                                       test_groups=groups))
    markdown, summary = _compare(runs)
    assert f"Test intervals: a cluster bootstrap over 20 patients ({N_TEST} images)." in markdown
    (test,) = summary["datasets"][0]["paired_tests"]
    assert (test["delong"]["method"], test["delong"]["n_clusters"]) == ("clustered-delong", 20)
    assert f"| {N_TEST} (20 patients) |" in markdown
    assert "DeLong clustered over 20 patients, p" in _verdict(markdown)
    plain = tmp_path / "plain"
    write_study(plain)
    assert "Test intervals: a bootstrap over images" in _compare(plain)[0]
