"""The run_* functions build the configs the stages take; load_runs and the evaluation protocol match the records."""

from __future__ import annotations

import dataclasses
import inspect
import sys

import numpy as np
import pytest

import headstart
from headstart import api
from headstart.data.options import SourceOptions
from headstart.data.types import SplitConfig
from headstart.errors import ConfigError, DataError, HeadstartError
from headstart.evaluation import choose_threshold, evaluate
from headstart.evaluation.records import RunRecord
from headstart.extract.config import ExtractConfig
from headstart.finetune.config import AugmentConfig, FinetuneConfig
from headstart.heads.runner import HeadsConfig
from tests.heads.synthetic_cache import make_cache


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Real records: logreg and knn on a tiny synthetic cache, two seeds of logreg's shared fit."""
    tmp = tmp_path_factory.mktemp("api_runs")
    cache = make_cache(tmp / "c.h5", n=120, dim=6)
    records = headstart.run_heads(cache, tmp / "runs", heads=["logreg", "knn"], sweep="quick", n_boot=50,
                                  device="cpu", progress=False)
    return tmp / "runs", records


def test_run_heads_returns_runs_like_load_runs(runs):
    runs_dir, records = runs
    loaded = headstart.load_runs(runs_dir)
    assert isinstance(records, list) and all(isinstance(r, RunRecord) for r in loaded)
    assert [r.run_id for r in loaded] == sorted(r.run_id for r in records)
    assert loaded[0].metrics["test"]["auroc"] == pytest.approx(
        next(r for r in records if r.run_id == loaded[0].run_id).metrics["test"]["auroc"])


def test_to_frame_has_one_row_per_run_with_intervals(runs):
    pytest.importorskip("pandas")
    frame = headstart.load_runs(runs[0]).to_frame()
    assert len(frame) == 2 and set(frame["head"]) == {"logreg", "knn"}
    for column in ("run_id", "backbone", "feature_set", "test_auroc", "test_auroc_low", "test_auroc_high",
                   "val_balanced_accuracy", "train_seconds", "threshold"):
        assert column in frame.columns, column
    row = frame.set_index("head").loc["logreg"]
    assert row["test_auroc_low"] <= row["test_auroc"] <= row["test_auroc_high"]


def test_to_frame_without_pandas_is_one_line(runs, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # what a missing install looks like to `import`
    loaded = headstart.load_runs(runs[0])
    with pytest.raises(HeadstartError, match=r"^pandas is not installed; to_frame needs it: pip install pandas"):
        loaded.to_frame()
    assert loaded.rows()[0]["run_id"] == loaded[0].run_id  # the plain rows need nothing


def test_load_runs_of_a_folder_without_records(tmp_path):
    with pytest.raises(DataError, match="no record.json under"):
        headstart.load_runs(tmp_path)


def test_choose_threshold_and_evaluate_reproduce_the_records(runs):
    """A user with only the predictions gets the record's threshold and test metrics, intervals included."""
    for record in headstart.load_runs(runs[0]):
        val, test = record.predictions["val"], record.predictions["test"]
        threshold = choose_threshold(np.array(val["y_true"]), np.array(val["proba"]),
                                     rule=record.config["threshold_rule"])
        assert threshold == record.threshold
        metrics = evaluate(np.array(test["y_true"]), np.array(test["proba"]), threshold=threshold, n_boot=50,
                           seed=record.seed)
        stored = record.metrics["test"]
        assert set(metrics) == set(stored)
        for key in ("auroc", "auroc_ci", "sensitivity", "sensitivity_ci", "specificity_ci", "f1"):
            np.testing.assert_allclose(metrics[key], stored[key], err_msg=key)


def test_choose_threshold_takes_positive_scores_and_is_none_for_multiclass():
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    assert choose_threshold(y, p) == choose_threshold(y, np.stack([1 - p, p], axis=1))
    assert choose_threshold(y, p, rule="fixed:0.3") == 0.3
    three = np.full((6, 3), 1 / 3)
    assert choose_threshold(np.array([0, 1, 2, 0, 1, 2]), three) is None
    with pytest.raises(ConfigError, match="unknown threshold rule 'youdn'"):
        choose_threshold(y, p, rule="youdn")


# --- the wrappers build exactly the stages' configs -----------------------------------------------------------


def _capture(monkeypatch, target: str, result=None) -> list[dict]:
    module_name, attr = target.rsplit(":", 1)
    module = __import__(module_name, fromlist=[attr])
    calls: list[dict] = []
    monkeypatch.setattr(module, attr, lambda **kwargs: calls.append(kwargs) or result)
    return calls


def test_run_extract_builds_the_extract_config(monkeypatch):
    calls = _capture(monkeypatch, "headstart.extract.runner:run_extract")
    headstart.run_extract("DATA", "c.h5", backbones=("resnet18", "densenet121"), weights="random", seed=3,
                          val_fraction=0.2, group_pattern="p")
    assert calls == [{"data": "DATA", "output": "c.h5", "config": ExtractConfig(
        backbones=["resnet18", "densenet121"], weights="random", seed=3,
        split=SplitConfig(val_fraction=0.2, seed=3, group_pattern="p"))}]
    config = ExtractConfig(backbones=["vgg11"], batch_size=4)
    headstart.run_extract("DATA", "c.h5", config=config)
    assert calls[-1]["config"] is config


def test_run_heads_and_run_finetune_build_their_configs(monkeypatch):
    heads = _capture(monkeypatch, "headstart.heads.runner:run_heads", result=[])
    headstart.run_heads("c.h5", "runs", feature_sets=("a",), heads=("knn",), seeds=2)
    assert heads[0]["config"] == HeadsConfig(feature_sets=["a"], heads=["knn"], seeds=2)
    finetune = _capture(monkeypatch, "headstart.finetune.train:run_finetune")
    headstart.run_finetune("DATA", "runs", backbone="densenet121", epochs=1, augment=False, seed=4, test_fraction=0.3,
                           splits_from="c.h5")
    assert finetune[0] == {"data": "DATA", "runs_dir": "runs", "splits_from": "c.h5", "resume": False,
                           "config": FinetuneConfig(backbone="densenet121", epochs=1, seed=4,
                                                    augment=AugmentConfig(enabled=False)),
                           "split_config": SplitConfig(test_fraction=0.3, seed=4)}
    headstart.run_finetune("DATA", "runs", config=FinetuneConfig(seed=9))
    assert finetune[-1]["split_config"] == SplitConfig(seed=9)  # one seed for splits and training
    headstart.run_finetune("DATA", "runs", seed=2, split_config=SplitConfig(seed=1))
    assert (finetune[-1]["config"].seed, finetune[-1]["split_config"].seed) == (2, 1)


@pytest.mark.parametrize("call, needle", [
    (lambda: headstart.run_extract("D", "c.h5", config=ExtractConfig(), weights="random"), "config= and weights="),
    (lambda: headstart.run_heads("c.h5", "r", config=HeadsConfig(), heads=["knn"]), "config= and heads="),
    (lambda: headstart.run_finetune("D", "r", config=FinetuneConfig(), lr=0.1), "config= and lr="),
    (lambda: headstart.run_finetune("D", "r", split_config=SplitConfig(), val_fraction=0.3),
     "split_config= and val_fraction="),
])
def test_keywords_and_a_config_together_are_refused(call, needle):
    with pytest.raises(ConfigError, match=needle):
        call()


@pytest.mark.parametrize("function, config, extra", [
    (api.run_extract, ExtractConfig(), {**{f.name: f.default for f in dataclasses.fields(SplitConfig)},
                                        **dataclasses.asdict(SourceOptions())}),
    (api.run_heads, HeadsConfig(), {}),
    (api.run_finetune, FinetuneConfig(), {**{f.name: f.default for f in dataclasses.fields(SplitConfig)},
                                          **dataclasses.asdict(SourceOptions()),
                                          "augment": AugmentConfig().enabled,
                                          "augment_preset": AugmentConfig().preset}),
])
def test_keyword_defaults_are_the_config_defaults(function, config, extra):
    """Keywords are documented in the signature; they must not drift from the dataclasses the stages read."""
    defaults = {**dataclasses.asdict(config), **extra}
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind is not parameter.KEYWORD_ONLY or name in ("config", "split_config", "progress",
                                                                     "splits_from", "resume"):
            continue
        assert name in defaults, f"{function.__name__}({name}=...) is not a field of {type(config).__name__}"
        default = list(parameter.default) if isinstance(parameter.default, tuple) else parameter.default
        assert default == defaults[name], f"{function.__name__}({name}=) default {default!r} != {defaults[name]!r}"
