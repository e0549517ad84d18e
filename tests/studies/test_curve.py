"""`headstart curve`: the ladder, repeats, the power-law fit, and the same draw as `finetune --train-size`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from headstart.cli import cli
from headstart.studies.curve import CurveConfig, curve_draw, curve_sizes, run_curve
from headstart.evaluation.curve_fit import fit_power_law, labels_for, power_law
from tests.heads.synthetic_cache import make_cache


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return make_cache(tmp_path_factory.mktemp("curve") / "c.h5", n=600, dim=8)


@pytest.fixture(scope="module")
def curve_doc(cache, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    result = CliRunner().invoke(cli, ["curve", str(cache), "-o", str(runs), "--sizes", "k=1,k=2,k=4", "--sizes",
                                      "5%", "--sizes", "10%,25%", "--repeats", "3", "--n-boot", "50",
                                      "--target", "0.9"])
    assert result.exit_code == 0, result.output
    path = runs / "curve_resnet18_logreg" / "curve.json"
    assert f"-> {path}" in result.output and "plateau" in result.output
    return json.loads(path.read_text())


def test_curve_json_has_points_summary_and_a_fit_with_a_plateau(curve_doc):
    sizes = [entry["size"] for entry in curve_doc["summary"]]
    assert sizes == ["k=1", "k=2", "k=4", "5%", "10%", "25%", "100%"]  # nominal order; the whole train split last
    n_train = curve_doc["splits"]["train"]
    last = curve_doc["summary"][-1]
    assert last["repeats"] == 1 and last["n_train"] == n_train
    for entry in curve_doc["summary"][:-1]:
        assert entry["repeats"] == 3
    for point in curve_doc["points"]:
        assert {"size", "n_train", "n_patients", "per_class", "repeat", "seed", "metrics"} <= set(point)
        assert {"auroc", "auroc_ci", "accuracy"} <= set(point["metrics"]["test"]) and "auroc" in point["metrics"]["val"]
        assert point["seed"] == point["repeat"]  # --seed 0: repeat r draws with seed r
        assert sum(point["per_class"]) == point["n_train"]
    k4 = [p for p in curve_doc["points"] if p["size"] == "k=4"]
    assert [p["repeat"] for p in k4] == [0, 1, 2] and all(min(p["per_class"]) >= 4 for p in k4)
    fit = curve_doc["fit"]
    assert fit is not None and 0.5 < fit["plateau"] <= 1.0 and fit["plateau"] == fit["a"]
    assert fit["b"] >= 0 and fit["c"] > 0
    assert fit["labels_95"] <= fit["labels_99"] and fit["target"] == 0.9 and fit["labels_target"] > 0
    summary = curve_doc["summary"][3]["test"]["auroc"]
    assert summary["ci"][0] <= summary["mean"] <= summary["ci"][1]
    assert any("larger than the training draw" in note for note in curve_doc["notes"])  # 120 val rows > k=1


def test_power_law_fit_recovers_a_known_plateau_from_noisy_repeats():
    rng = np.random.default_rng(0)
    n = np.array([2, 4, 8, 16, 32, 64, 128, 365, 730, 1825, 3650], dtype=float)
    for a, b, c in [(0.93, 0.45, 0.5), (0.85, 0.3, 0.35), (0.97, 0.6, 0.8)]:
        repeats = power_law(n[None, :], a, b, c) + rng.normal(0, 0.01, size=(5, n.size))
        fit, reason = fit_power_law(n, repeats.mean(axis=0))
        assert reason is None
        assert abs(fit["plateau"] - a) < 0.01, (a, fit)
        assert fit["labels_95"] == pytest.approx((fit["b"] / (0.05 * fit["a"])) ** (1 / fit["c"]))


def test_weighted_fit_recovers_the_plateau_when_few_label_sizes_are_noisy():
    rng = np.random.default_rng(1)
    n = np.array([2, 4, 8, 16, 32, 64, 128, 365, 730, 1825, 3650], dtype=float)
    noise = 0.15 * n ** -0.5  # the spread over draws shrinks as the draws grow, as on real data
    for a, b, c in [(0.93, 0.45, 0.5), (0.985, 1.0, 0.75)]:
        repeats = power_law(n[None, :], a, b, c) + rng.normal(0, 1, size=(5, n.size)) * noise
        sd = repeats.std(axis=0, ddof=1)
        fit, reason = fit_power_law(n, repeats.mean(axis=0), sigma=sd / np.sqrt(5))
        assert reason is None and abs(fit["plateau"] - a) < 0.01, (a, fit)


def test_fit_is_null_with_a_reason_below_four_sizes_and_bounded_on_a_noisy_curve():
    fit, reason = fit_power_law([10, 20, 40], [0.7, 0.8, 0.85])
    assert fit is None and "at least 4" in reason
    fit, reason = fit_power_law([2, 4, 8, 16, 32], [0.9, 0.6, 0.95, 0.7, 0.99])  # no trend: still a bounded fit
    assert reason is None and fit["a"] <= 1.0 and fit["b"] >= 0 and fit["c"] > 0
    assert labels_for(0.99, a=0.9, b=0.3, c=0.5, n_min=2) is None  # above the plateau: never
    assert labels_for(0.5, a=0.9, b=0.0, c=0.5, n_min=2) == 2  # flat: reached at the first size


def test_a_draw_without_every_class_is_skipped_with_a_note(tmp_path):
    cache = make_cache(tmp_path / "c.h5", n=400, dim=4, n_classes=3)
    (result,) = run_curve(cache_path=cache, runs_dir=tmp_path / "runs", progress=False,
                          config=CurveConfig(sizes=["1", "5%"], repeats=2, n_boot=20))
    doc = result.document  # one image cannot hold three classes
    assert [p["size"] for p in doc["points"]] == ["5%", "5%", "100%"]
    assert sum(note.startswith("1 repeat") and "skipped" in note for note in doc["notes"]) == 2
    assert doc["fit"] is None and "needs at least 4" in doc["fit_reason"]


def test_val_from_train_selects_inside_each_draw(tmp_path):
    cache = make_cache(tmp_path / "c.h5", n=300, dim=4)
    (result,) = run_curve(cache_path=cache, runs_dir=tmp_path / "runs", progress=False,
                          config=CurveConfig(sizes=["25%"], repeats=1, n_boot=20, val_from_train=True))
    points = result.document["points"]
    assert {p["selection"] for p in points} == {"cv-5fold"}
    for p in points:  # the threshold is chosen on the applied model's held-out fifth of the draw
        assert 0.15 * p["n_train"] <= p["metrics"]["val"]["n"] <= 0.25 * p["n_train"]
    assert not result.document["notes"]


def test_bad_sizes_and_metrics_are_usage_errors(cache, tmp_path):
    for args, needle in ((["--sizes", "ten"], "ten"), (["--sizes", "150%"], "150%"), (["--repeats", "0"], "0")):
        result = CliRunner().invoke(cli, ["curve", str(cache), "-o", str(tmp_path), *args])
        assert result.exit_code == 2 and needle in result.output and "Traceback" not in result.output


def test_default_ladder_is_used_without_sizes():
    sizes = curve_sizes(None, n_train=3650, n_classes=2)
    assert [s.label for s in sizes][:3] == ["k=1", "k=2", "k=4"] and sizes[-1].label == "100%" and len(sizes) == 12


def test_finetune_train_size_draws_the_images_curve_draws(phantom_dir, tmp_path, monkeypatch):
    from headstart.api import run_curve as api_curve, run_extract, run_finetune
    from headstart.cache.reader import FeatureCache
    from headstart.finetune import train as finetune_train
    from headstart.heads.fitting import Rows

    cache = tmp_path / "c.h5"
    run_extract(phantom_dir, cache, backbones=["resnet18"], weights="random", image_size=32, batch_size=16,
                workers=0)
    (result,) = api_curve(cache, tmp_path / "runs", sizes=["k=4"], repeats=2, n_boot=20, progress=False)
    point = [p for p in result.document["points"] if p["size"] == "k=4" and p["repeat"] == 1][0]

    drawn = {}
    real = finetune_train.draw_samples

    def spy(samples, size, **kwargs):
        kept, draw = real(samples, size, **kwargs)
        drawn["ids"] = sorted(s.id for s in kept)
        return kept, draw

    monkeypatch.setattr(finetune_train, "draw_samples", spy)
    record = run_finetune(phantom_dir, tmp_path / "runs", backbone="resnet18", weights="random", image_size=32,
                          epochs=1, batch_size=16, freeze="backbone", workers=0, patience=0, n_boot=20, seed=1,
                          train_size="k=4")
    with FeatureCache(cache) as c:
        train = c.splits == "train"
        rows = Rows(np.zeros((int(train.sum()), 1)), c.labels[train], c.ids[train], c.groups[train])
    draw = curve_draw(rows, point_size(point), repeat=1, seed=0, n_classes=2)
    assert drawn["ids"] == sorted(rows.ids[draw.index].tolist())
    config = record.config
    assert (config["n_train"], config["draw_seed"], config["per_class"], config["n_patients"]) == (
        point["n_train"], point["seed"], point["per_class"], point["n_patients"])
    assert config["train_size"] == "k=4" and record.run_id.endswith("train-k4_s1")


def point_size(point):
    from headstart.data.draws import parse_size

    return parse_size(point["size"])


def test_multilabel_curve_draws_per_finding_and_ranks_by_macro_auroc(tmp_path):
    """A multi-label cache: draws keep each finding's share of positives, every point's metric is the test macro
    AUROC over the findings, and the whole-train point selects and scores what `heads` selects and scores."""
    import headstart
    from tests.heads.multilabel_cache import FINDINGS, make_multilabel_cache

    cache = make_multilabel_cache(tmp_path / "ml.h5", n=300)
    (result,) = run_curve(cache_path=cache, runs_dir=tmp_path / "runs", progress=False,
                          config=CurveConfig(sizes=["50%"], repeats=2, n_boot=20, device="cpu"))
    doc = result.document
    assert doc["dataset"]["task"] == "multilabel" and doc["dataset"]["labels"] == list(FINDINGS)
    half = [p for p in doc["points"] if p["size"] == "50%"]
    full = next(p for p in doc["points"] if p["size"] == "100%")
    assert len(half) == 2
    for p in half:  # per_class counts each finding's positives (then the rows with none): about half of each
        assert np.allclose(p["per_class"], np.array(full["per_class"]) / 2, atol=3)
    for p in doc["points"]:
        per = p["metrics"]["test"]["per_label"]
        scored = [per[f]["auroc"] for f in FINDINGS if per[f]["auroc"] is not None]
        assert p["metrics"]["test"]["auroc"] == pytest.approx(np.mean(scored))
        assert set(p["threshold"]) == set(FINDINGS)
    (record,) = headstart.run_heads(cache, tmp_path / "heads", heads=["logreg"], sweep="quick", n_boot=20,
                                    device="cpu", progress=False)
    scores = record.config["sweep_scores"]  # val macro AUROC of each C, as heads ranked them
    best = max(scores, key=lambda s: s["auroc"])
    assert full["selected"]["C"] == record.config["C"] == best["C"]
    assert full["metrics"]["test"]["auroc"] == pytest.approx(record.metrics["test"]["auroc"])
    assert doc["summary"][-1]["test"]["auroc"]["mean"] == pytest.approx(record.metrics["test"]["auroc"])


def test_multilabel_curve_refuses_what_it_cannot_do_in_one_line(tmp_path):
    from headstart.errors import ConfigError
    from tests.heads.multilabel_cache import make_multilabel_cache

    cache = make_multilabel_cache(tmp_path / "ml.h5", n=100)
    with pytest.raises(ConfigError, match="--select-metric f1 is not defined for a multi-label cache"):
        run_curve(cache_path=cache, runs_dir=tmp_path / "runs", progress=False,
                  config=CurveConfig(sizes=["50%"], select_metric="f1", device="cpu"))
    assert not (tmp_path / "runs").exists()


def test_multilabel_curve_val_from_train_selects_by_cross_validation_per_draw(tmp_path):
    """`curve --val-from-train` on a multi-label cache: each draw selects by per-finding cross-validation inside
    it (out-of-fold macro AUROC), names the findings that selection scored, and never reads val."""
    from tests.heads.multilabel_cache import FINDINGS, make_multilabel_cache

    cache = make_multilabel_cache(tmp_path / "ml.h5", n=300, rare_in_train=True)
    runs = tmp_path / "runs"
    result = CliRunner().invoke(cli, ["curve", str(cache), "-o", str(runs), "--sizes", "50%", "--repeats", "2",
                                      "--n-boot", "20", "--val-from-train", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    doc = json.loads((runs / "curve_feat_logreg" / "curve.json").read_text())
    assert len(doc["points"]) == 3 and doc["config"]["val_from_train"]
    for p in doc["points"]:
        assert p["selection"].startswith("cv-")
        chosen = p["selection_findings"]
        assert set(chosen["scored"]) | set(chosen["not_scored"]) == set(FINDINGS) and chosen["scored"]
        assert 0.15 * p["n_train"] <= p["metrics"]["val"]["n"] <= 0.25 * p["n_train"]  # the held-out fifth
        assert p["metrics"]["test"]["auroc"] > 0.6
