"""`compare` on multi-label records (per-finding table, heatmap, ROC per finding, label counts, per-finding paired
tests with Holm, macro-AUROC bootstrap) and on multi-class records (per-class table, K x K confusion)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from headstart.evaluation.bootstrap import evaluate
from headstart.evaluation.records import RunRecord, make_run_id, write_record
from headstart.evaluation.report import build_report

FINDINGS = ["Atelectasis", "Cardiomegaly", "Effusion", "Hernia"]
N_TEST, N_VAL = 240, 120
PNG = b"\x89PNG\r\n\x1a\n"


def _labels(n: int, rng: np.random.Generator, *, hernia_positive: bool) -> tuple[np.ndarray, np.ndarray]:
    y = (rng.random((n, len(FINDINGS))) < [0.3, 0.2, 0.4, 0.1]).astype(np.int64)
    y[:, 3] = 0  # Hernia: no positive on test (one class -> null) ...
    if hernia_positive:  # ... but two on val
        y[:2, 3] = 1
    mask = np.ones(y.shape, dtype=bool)
    mask[rng.random(y.shape) < 0.05] = False  # uncertain / unknown labels, never scored
    return y, mask


def _proba(y: np.ndarray, strengths: list[float], rng: np.random.Generator) -> np.ndarray:
    logit = np.asarray(strengths) * (2 * y - 1) + rng.normal(0, 1, size=y.shape)
    return 1 / (1 + np.exp(-logit))


def _per_label(y: np.ndarray, mask: np.ndarray, proba: np.ndarray) -> dict:
    out = {}
    for j, name in enumerate(FINDINGS):
        yj, pj = y[mask[:, j], j], proba[mask[:, j], j]
        entry = {"threshold": 0.5, "n": int(yj.size), "n_pos": int(yj.sum()), "n_masked": int((~mask[:, j]).sum())}
        if yj.min() == yj.max():
            out[name] = entry | {"auroc": None, "auroc_ci": None, "auprc": None, "sensitivity": None,
                                 "specificity": None, "reason": "one class among the labelled rows"}
        else:
            auc = float(roc_auc_score(yj, pj))
            out[name] = entry | {"auroc": auc, "auroc_ci": [auc - 0.04, auc + 0.04], "auprc": 0.5,
                                 "sensitivity": 0.7, "specificity": 0.7}
    return out


def _multilabel_record(*, strategy: str, head: str | None, seed: int, strengths: list[float],
                       uncertain: str = "ignore") -> RunRecord:
    label_rng = np.random.default_rng(11)  # one shared split for every run
    rng = np.random.default_rng(100 + seed + (0 if head else 50))
    outputs, metrics = {}, {}
    for split, n in (("test", N_TEST), ("val", N_VAL)):
        y, mask = _labels(n, label_rng, hernia_positive=split == "val")
        proba = _proba(y, strengths, rng)
        per_label = _per_label(y, mask, proba)
        aurocs = [v["auroc"] for v in per_label.values() if v["auroc"] is not None]
        metrics[split] = {"n": n, "auroc": float(np.mean(aurocs)), "auroc_ci": [0.6, 0.9], "micro_auroc": 0.8,
                          "mean_ap": 0.5, "per_label": per_label}
        outputs[split] = {"ids": [f"{split}/img{i:04d}.png" for i in range(n)], "y_true": y.tolist(),
                          "proba": proba.tolist(), "mask": mask.tolist(),
                          "groups": [f"patient{i // 3}" for i in range(n)]}  # 3 images per patient
    finetune = strategy == "finetune"
    policy = {"uncertain": uncertain, "blank": "negative", "uncertain_per_label": {}}
    variant = "-".join(part for part in ("freeze-none-64px" if finetune else "",
                                         "" if uncertain == "ignore" else f"u-{uncertain}") if part)
    return RunRecord(
        run_id=make_run_id(strategy, "resnet18", head, seed, variant=variant or None),
        strategy=strategy, backbone="resnet18", head=head,
        config={"image_size": 64, "label_policy": policy} if finetune else {"C": 1.0, "label_policy": policy},
        metrics=metrics, timing={"extract_seconds": 0.0 if finetune else 5.0, "train_seconds": 60.0 if finetune
                                 else 0.5, "eval_seconds": 0.1, "device": "cpu"},
        predictions=outputs, threshold={name: 0.5 for name in FINDINGS}, seed=seed,
        dataset={"manifest_hash": "c" * 64, "task": "multilabel", "labels": FINDINGS, "data": "/data/nih"})


@pytest.fixture(scope="module")
def multilabel_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    runs = tmp_path_factory.mktemp("ml") / "runs"
    # Effusion: the head separates strongly, the fine-tune barely; the other findings are alike
    for seed in (0, 1):
        write_record(runs, _multilabel_record(strategy="cached-head", head="logreg", seed=seed,
                                              strengths=[1.0, 1.0, 2.5, 1.0]))
    write_record(runs, _multilabel_record(strategy="finetune", head=None, seed=0, strengths=[1.0, 1.0, 0.1, 1.0]))
    write_record(runs, _multilabel_record(strategy="cached-head", head="logreg", seed=0, uncertain="ones",
                                          strengths=[0.5, 0.5, 0.5, 0.5]))  # U-Ones: a row of its own
    result = build_report(runs_dir=runs, output_dir=runs.parent / "out")
    summary = json.loads(result.summary_json.read_text(encoding="utf-8"))
    return result.output_dir, summary


def test_per_finding_table_has_a_row_per_finding_and_shows_null_as_one_class(multilabel_report) -> None:
    out, _ = multilabel_report
    markdown = (out / "report.md").read_text(encoding="utf-8")
    table = markdown.split("### Per-finding test AUROC")[1].split("###")[0]
    header = next(line for line in table.splitlines() if line.startswith("| finding |"))
    assert "| resnet18 logreg [U-Ignore, blank negative] | resnet18 fine-tune (64 px) [U-Ignore, blank negative] |" \
        in header  # the best head by val (U-Ignore) and the fine-tune
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert set(FINDINGS) | {"macro AUROC"} <= set(rows)
    assert rows["Hernia"].count("n/a (one class)") == 2  # both runs, never a number
    assert re.search(r"\d\.\d{3} ± \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", rows["Effusion"])  # two seeds: ± and CI


def test_heatmap_and_roc_grid_are_pngs_in_md_and_html(multilabel_report) -> None:
    out, summary = multilabel_report
    (dataset,) = summary["datasets"]
    assert {"plots/finding_heatmap.png", "plots/finding_roc.png"} <= set(dataset["plots"])
    for name in ("finding_heatmap.png", "finding_roc.png"):
        assert (out / "plots" / name).read_bytes()[:8] == PNG
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert markdown.count("(plots/finding_heatmap.png)") == 1
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count('<img src="data:image/png;base64,') == len(re.findall(r"!\[[^\]]*\]\(plots/", markdown))
    assert "n/a (one class)" in page
    assert dataset["roc_run"] == "cached-head_resnet18_logreg_s0"  # the verdict's run: best by val
    hernia = dataset["per_finding"]["Hernia"]
    assert hernia["resnet18 logreg [U-Ignore, blank negative]"]["reason"] == "one class among the labelled rows"
    assert "resnet18 logreg [U-Ones, blank negative]" in hernia  # every run is in the heatmap, U-Ones included


def test_label_counts_come_from_the_records(multilabel_report) -> None:
    _, summary = multilabel_report
    labels = summary["datasets"][0]["labels"]
    label_rng = np.random.default_rng(11)
    y_test, mask_test = _labels(N_TEST, label_rng, hernia_positive=False)
    y_val, mask_val = _labels(N_VAL, label_rng, hernia_positive=True)
    for j, name in enumerate(FINDINGS):
        entry = labels["splits"]["test"][name]
        assert entry["n"] == mask_test[:, j].sum() and entry["n_pos"] == (y_test[:, j] & mask_test[:, j]).sum()
        assert entry["n_masked"] == (~mask_test[:, j]).sum()
    both = np.concatenate([y_test * mask_test, y_val * mask_val])
    assert labels["cooccurrence"] == (both.T @ both).tolist()
    assert labels["splits"]["test"]["Hernia"]["prevalence"] == 0.0


def test_paired_tests_per_finding_with_holm(multilabel_report) -> None:
    out, summary = multilabel_report
    (test,) = summary["datasets"][0]["paired_tests"]
    entries = {e["finding"]: e for e in test["per_finding"]}
    assert entries["Hernia"]["p_value"] is None and entries["Hernia"]["p_holm"] is None
    scored = [e for e in test["per_finding"] if e["p_value"] is not None]
    assert len(scored) == 3
    for e in scored:
        assert e["p_value"] <= e["p_holm"] <= 1.0
    by_raw = sorted(scored, key=lambda e: e["p_value"])
    assert [e["p_holm"] for e in by_raw] == sorted(e["p_holm"] for e in by_raw)  # monotone in the raw order
    assert by_raw[0]["p_holm"] == pytest.approx(min(1.0, 3 * by_raw[0]["p_value"]))
    assert test["differ"] == [{"finding": "Effusion", "better": "a"}]
    assert {e["method"] for e in scored} == {"clustered-delong"}  # 3 images per patient in the records
    assert all(e["n_clusters"] <= N_TEST // 3 for e in scored)
    macro = test["macro"]
    assert macro["method"] == "cluster-bootstrap" and macro["n_clusters"] == N_TEST // 3
    assert macro["n_findings"] == 3 and macro["ci_diff"][0] <= macro["diff"] <= macro["ci_diff"][1]
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "| finding | n | positives | AUROC head | AUROC fine-tune | difference [95% CI] | DeLong p | Holm p |" \
        in markdown
    assert "80 patients resampled" in markdown


def test_verdict_speaks_of_macro_auroc_and_names_the_differing_finding(multilabel_report) -> None:
    _, summary = multilabel_report
    verdict = " ".join(summary["datasets"][0]["verdict"])
    assert "test macro AUROC" in verdict
    assert "they differ on Effusion (head higher)" in verdict
    assert "Holm-corrected over 3 findings" in verdict


def _multiclass_record(*, strategy: str, head: str | None, seed: int, strength: float) -> RunRecord:
    label_rng, rng = np.random.default_rng(5), np.random.default_rng(seed + (0 if head else 9))
    metrics, outputs = {}, {}
    for split, n in (("test", 150), ("val", 90)):
        y = label_rng.integers(0, 3, n)
        logits = rng.normal(0, 1, (n, 3)) + strength * np.eye(3)[y]
        proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        metrics[split] = evaluate(y, proba, threshold=None, n_boot=30, seed=seed)
        outputs[split] = {"ids": [f"{split}/{i}" for i in range(n)], "y_true": y.tolist(), "proba": proba.tolist()}
    finetune = strategy == "finetune"
    return RunRecord(
        run_id=make_run_id(strategy, "resnet18", head, seed, variant="freeze-none" if finetune else None),
        strategy=strategy, backbone="resnet18", head=head, config={"freeze": "none"} if finetune else {},
        metrics=metrics, timing={"train_seconds": 1.0}, predictions=outputs, threshold=None, seed=seed,
        dataset={"manifest_hash": "d" * 64, "task": "multiclass", "classes": ["NORMAL", "BACTERIA", "VIRUS"]})


def test_multiclass_report_shows_per_class_auroc_and_the_confusion(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    head = _multiclass_record(strategy="cached-head", head="logreg", seed=0, strength=2.0)
    finetune = _multiclass_record(strategy="finetune", head=None, seed=0, strength=1.0)
    for record in (head, finetune):
        write_record(runs, record)
    result = build_report(runs_dir=runs, output_dir=tmp_path / "out")
    markdown = result.report_md.read_text(encoding="utf-8")
    table = markdown.split("### Per-class test AUROC")[1].split("###")[0]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert {"NORMAL", "BACTERIA", "VIRUS"} <= set(rows)
    for k, name in enumerate(["NORMAL", "BACTERIA", "VIRUS"]):
        assert f"{head.metrics['test']['auroc_per_class'][k]:.3f}" in rows[name]
        assert f"{finetune.metrics['test']['auroc_per_class'][k]:.3f}" in rows[name]
    confusion = markdown.split("### Confusion on test (3 x 3 counts; rows = true class")[1].split("###")[0]
    expected = head.metrics["test"]["confusion_matrix"]
    lines = [line for line in confusion.split("resnet18 logreg")[1].splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| true class | NORMAL | BACTERIA | VIRUS |")
    body = [[int(c) for c in line.strip("| ").split(" | ")[1:]] for line in lines[2:5]]
    assert body == expected and sum(map(sum, body)) == 150
    summary = json.loads(result.summary_json.read_text(encoding="utf-8"))["datasets"][0]
    assert summary["task"] == "multiclass"
    assert summary["confusion"]["resnet18 logreg"]["counts"] == expected


def test_unpairable_multilabel_runs_get_a_note_not_a_crash() -> None:
    from headstart.evaluation.report.comparisons import compare_runs

    head = _multilabel_record(strategy="cached-head", head="logreg", seed=0, strengths=[1.0] * 4)
    finetune = _multilabel_record(strategy="finetune", head=None, seed=0, strengths=[1.0] * 4)
    moved = _multilabel_record(strategy="finetune", head=None, seed=0, strengths=[1.0] * 4)
    moved.predictions["test"]["ids"] = [f"other/{i}" for i in range(N_TEST)]
    assert "test ids differ" in compare_runs(head, moved)["note"]
    flipped = _multilabel_record(strategy="finetune", head=None, seed=0, strengths=[1.0] * 4)
    y = np.asarray(flipped.predictions["test"]["y_true"])
    y[:, 0] = 1 - y[:, 0]
    flipped.predictions["test"]["y_true"] = y.tolist()
    assert "disagree on" in compare_runs(head, flipped)["note"]
    del finetune.predictions["test"]["mask"], finetune.predictions["test"]["groups"]  # both optional
    result = compare_runs(head, finetune)
    assert result["note"] is None and result["macro"]["method"] == "cluster-bootstrap"  # head's groups serve
    assert [e["finding"] for e in result["per_finding"]] == FINDINGS


def test_a_lone_head_without_predictions_still_reports_its_findings(tmp_path: Path) -> None:
    record = _multilabel_record(strategy="cached-head", head="logreg", seed=0, strengths=[1.0] * 4)
    record.predictions = {}
    write_record(tmp_path / "runs", record)
    result = build_report(runs_dir=tmp_path / "runs", output_dir=tmp_path / "out")
    markdown = result.report_md.read_text(encoding="utf-8")
    assert "The records hold no val or test labels to count." in markdown
    assert "| Hernia | - | n/a (one class) |" in markdown
    assert (result.output_dir / "plots" / "finding_heatmap.png").read_bytes()[:8] == PNG
    assert not (result.output_dir / "plots" / "finding_roc.png").exists()  # no predictions: no ROC, no crash
    assert "There is no fine-tune record to contrast with" in markdown
