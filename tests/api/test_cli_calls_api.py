"""The CLI is a thin layer over the Python API: every command calls its public function, with every option.

Each command's public function is replaced by a spy that binds the call against the real signature (so a
keyword the function does not take fails here), records it and returns a stand-in result for the printing.
A new command without a case below fails `test_every_command_has_a_case`, by design.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import click
import pytest
from click.testing import CliRunner

from headstart.cli import cli
from tests.heads.synthetic_cache import make_cache


@dataclass
class Case:
    target: str  # "module:attribute" of the public function the command must call
    argv: Callable[[Path], list[str]]  # the command line, given a temporary folder
    result: Callable[[Path], object] | None = None  # what the spy returns (None: it calls the real function)
    expect: Callable[[inspect.BoundArguments, Path], None] = lambda bound, tmp: None  # checks on the call
    calls: list = field(default_factory=list)


def _extract_result(tmp):
    from headstart.extract.runner import ExtractResult

    return ExtractResult(cache_path=str(tmp / "c.h5"), extracted=["resnet18"], n_images=3, seconds=1.0)


def _finetune_record(tmp):
    from headstart.evaluation.records import RunRecord

    return RunRecord(run_id="finetune_resnet18_s0", strategy="finetune", backbone="resnet18",
                     metrics={"test": {"auroc": 0.8, "auroc_ci": [0.7, 0.9], "accuracy": 0.7,
                                       "accuracy_ci": [0.6, 0.8]}},
                     timing={"train_seconds": 1.0, "images_per_second": 10.0, "device": "cpu"})


# every option extract and screen share (screen races the backbones' own features: no --pool/--layer)
EXTRACT_SHARED = ["-b", "resnet18", "-b", "densenet121", "--engine", "torch", "--trust-remote-code", "--weights",
                  "random", "--image-size", "32", "--crop", "full", "--batch-size", "8", "--device", "cpu", "--precision",
                  "fp32",
                  "--decode", "device", "--workers", "1", "--feature-dtype", "float32", "--val-fraction", "0.3",
                  "--test-fraction", "0.25", "--group-pattern", r"(p\d+)", "--seed", "7", "--on-bad-image", "skip",
                  "--overwrite"]
EXTRACT_ALL = [*EXTRACT_SHARED, "--pool", "mean", "--pool", "gem", "--layer", "final", "--layer", "layer3"]


def _expect_extract(bound, tmp):
    assert bound.arguments == {**_extract_call(tmp), **SOURCE_DEFAULTS, **VIEW_DEFAULTS, "pools": ["mean", "gem"],
                               "layers": ["final", "layer3"]}
    assert set(bound.signature.parameters) - set(bound.arguments) == {"config"}  # the CLI reaches every option


# extract's reader options (multi-label CSVs, NIH / CheXpert layouts) at their defaults
# extract's cached-view options at their defaults
VIEW_DEFAULTS = {"views": 0, "augment": "light", "tta": 0}
SOURCE_DEFAULTS = {"labels": [], "label_column": None, "label_sep": None, "path_column": None,
                   "group_column": None, "split_column": None, "projection": "all", "allow_missing": False}


def _expect_heads(bound, tmp):
    from headstart.heads.runner import HeadsConfig

    assert bound.arguments["cache"] == str(tmp / "c.h5") and bound.arguments["output"] == str(tmp / "runs")
    assert bound.arguments["config"] == HeadsConfig(
        feature_sets=["resnet18"], heads=["knn", "logreg"], sweep="quick", seeds=2, select_metric="f1",
        threshold_rule="sensitivity:0.9", class_weight="none", device="cpu", n_boot=20)


def _expect_finetune(bound, tmp):
    from headstart.data.types import SplitConfig
    from headstart.finetune.config import AugmentConfig, FinetuneConfig

    assert bound.arguments["data"] == "DATA" and bound.arguments["output"] == str(tmp / "runs")
    assert bound.arguments["config"] == FinetuneConfig(
        backbone="densenet121", weights="random", epochs=2, lr=0.01, batch_size=4, freeze="partial", image_size=32,
        crop="pad", precision="fp32", device="cpu", workers=0, patience=0,
        augment=AugmentConfig(enabled=False, preset="light"), seed=5,
        deterministic=True, train_size="k=2")
    assert bound.arguments["split_config"] == SplitConfig(val_fraction=0.3, test_fraction=0.25, seed=5,
                                                          group_pattern="p")
    assert bound.arguments["splits_from"] == "c.h5" and bound.arguments["resume"] is True


def _expect_curve(bound, tmp):
    assert bound.arguments == {
        "cache": str(tmp / "c.h5"), "output": str(tmp / "runs"), "feature_sets": ["resnet18"],
        "heads": ["knn", "logreg"], "sizes": ["k=1", "k=2", "10%"], "repeats": 2, "sweep": "default", "seed": 3,
        "val_from_train": True, "metric": "balanced_accuracy", "target": 0.9, "select_metric": "f1",
        "threshold_rule": "sensitivity:0.9", "class_weight": "none", "device": "cpu", "n_boot": 20, "views": "on",
        "uncertain": ["ones:Edema", "zeros"], "blank": "unknown",
    }
    assert set(bound.signature.parameters) - set(bound.arguments) == {"config", "progress"}


def _screen_result(tmp):
    from headstart.studies.screen import ScreenResult

    document = {"rounds": [], "survivors": ["resnet18"], "cache": str(tmp / "c.h5")}
    return ScreenResult(cache_path=tmp / "c.h5", screen_path=tmp / "c.h5.screen.json", survivors=["resnet18"],
                        document=document)


def _expect_screen(bound, tmp):
    expected = _extract_call(tmp)
    expected.update(keep=2, head="knn", sweep="default", fraction=0.2, min_images=50, n_boot=30, uncertain="ignore",
                    blank="negative", **SOURCE_DEFAULTS)
    assert bound.arguments == expected
    assert set(bound.signature.parameters) - set(bound.arguments) == {"config"}


def _extract_call(tmp):
    return {
        "data": "DATA", "output": str(tmp / "c.h5"), "backbones": ["resnet18", "densenet121"], "engine": "torch",
        "trust_remote_code": True, "weights": "random",
        "image_size": 32, "crop": "full", "batch_size": 8, "device": "cpu", "precision": "fp32", "decode": "device",
        "workers": 1,
        "feature_dtype": "float32", "val_fraction": 0.3, "test_fraction": 0.25, "group_pattern": r"(p\d+)",
        "seed": 7, "on_bad_image": "skip", "overwrite": True,
    }


def _expect_predict(bound, tmp):
    assert bound.arguments == {
        "run": "RUN", "data": "DATA", "output": str(tmp / "p.jsonl"), "cache": None, "split": None, "format": "jsonl",
        "batch_size": 8, "device": "cpu", "precision": "fp32", "engine": "torch", "workers": 1, "on_bad_image": "skip",
        "weights": "w.pth", "n_boot": 20,
    }
    assert set(bound.signature.parameters) - set(bound.arguments) == {"config", "progress"}  # every option reached


def _predict_result(tmp):
    from headstart.apply.predict import PredictResult

    return PredictResult(output=str(tmp / "p.jsonl"), run_id="r", classes=["a", "b"], threshold=0.5, n_rows=3,
                         seconds=1.0, metrics={"auroc": 0.9, "auroc_ci": [0.8, 1.0]}, metrics_path="m.json")


def _export_result(tmp):
    from headstart.apply.export import ExportResult

    return ExportResult(model=str(tmp / "m.onnx"), card=str(tmp / "m.json"), run_id="r", exporter="torchscript",
                        max_abs_diff=1e-6, tolerance=1e-5, seconds=1.0)


def _cache_file(tmp):
    path = tmp / "c.h5"
    if not path.exists():
        make_cache(path, n=40, dim=4)
    return path


CASES: dict[str, Case] = {
    "audit": Case("headstart.api:run_audit",
                  lambda tmp: ["audit", str(_cache_file(tmp)), "-b", "resnet18", "--seed", "3", "--shuffle-repeats",
                               "2", "--fix", "--yes"],
                  expect=lambda bound, tmp: {k: v for k, v in bound.arguments.items() if k != "on_result"} == {
                      "cache": str(tmp / "c.h5"), "feature_set": "resnet18", "seed": 3, "shuffle_repeats": 2,
                      "fix": True, "yes": True}),
    "backbones": Case("headstart.backbones.catalog:backbone_info", lambda tmp: ["backbones", "resnet18", "--json"],
                      result=lambda tmp: {"name": "resnet18"},
                      expect=lambda bound, tmp: bound.arguments == {"name": "resnet18"}),
    "extract": Case("headstart.api:run_extract", lambda tmp: ["extract", "DATA", "-o", str(tmp / "c.h5"), *EXTRACT_ALL],
                    result=_extract_result, expect=_expect_extract),
    "cache info": Case("headstart.api:open_cache", lambda tmp: ["cache", "info", str(_cache_file(tmp)), "--json"],
                       expect=lambda bound, tmp: bound.arguments == {"path": str(tmp / "c.h5")}),
    "cache verify": Case("headstart.api:verify_cache", lambda tmp: ["cache", "verify", str(_cache_file(tmp))],
                         expect=lambda bound, tmp: bound.arguments == {"path": str(tmp / "c.h5")}),
    "heads": Case("headstart.api:run_heads",
                  lambda tmp: ["heads", str(tmp / "c.h5"), "-o", str(tmp / "runs"), "-b", "resnet18", "--head", "knn",
                               "--head", "logreg", "--sweep", "quick", "--seeds", "2", "--select-metric", "f1",
                               "--threshold-rule", "sensitivity:0.9", "--class-weight", "none", "--device", "cpu",
                               "--n-boot", "20"],
                  result=lambda tmp: [], expect=_expect_heads),
    "finetune": Case("headstart.api:run_finetune",
                     lambda tmp: ["finetune", "DATA", "-o", str(tmp / "runs"), "-b", "densenet121", "--weights",
                                  "random", "--epochs", "2", "--lr", "0.01", "--batch-size", "4", "--freeze",
                                  "partial", "--image-size", "32", "--crop", "pad", "--precision", "fp32",
                                  "--device", "cpu", "--workers", "0", "--no-augment", "--augment-preset", "light", "--splits-from", "c.h5", "--resume",
                                  "--patience", "0", "--deterministic", "--train-size", "k=2", "--val-fraction",
                                  "0.3", "--test-fraction",
                                  "0.25", "--group-pattern", "p", "--seed", "5"],
                     result=_finetune_record, expect=_expect_finetune),
    "compare": Case("headstart.api:run_compare",
                    lambda tmp: ["compare", str(tmp / "runs"), "-o", str(tmp / "report"), "--select-metric", "f1"],
                    result=lambda tmp: SimpleNamespace(n_records=2, n_datasets=1, n_curves=0, report_html="r.html",
                                                       report_md="r.md", summary_json="s.json"),
                    expect=lambda bound, tmp: bound.arguments == {"runs": tmp / "runs", "output": tmp / "report",
                                                                  "select_metric": "f1"}),
    "curve": Case("headstart.api:run_curve",
                  lambda tmp: ["curve", str(tmp / "c.h5"), "-o", str(tmp / "runs"), "-b", "resnet18", "--head", "knn",
                               "--head", "logreg", "--sizes", "k=1,k=2", "--sizes", "10%", "--repeats", "2",
                               "--sweep", "default", "--seed", "3", "--val-from-train", "--metric",
                               "balanced_accuracy", "--target", "0.9", "--select-metric", "f1", "--threshold-rule",
                               "sensitivity:0.9", "--class-weight", "none", "--device", "cpu", "--n-boot", "20",
                               "--uncertain", "ones:Edema", "--uncertain", "zeros", "--blank", "unknown",
                               "--views", "on"],
                  result=lambda tmp: [], expect=_expect_curve),
    "screen": Case("headstart.api:run_screen",
                   lambda tmp: ["screen", "DATA", "-o", str(tmp / "c.h5"), *EXTRACT_SHARED, "--keep", "2", "--head", "knn",
                                "--sweep", "default", "--fraction", "0.2", "--min-images", "50", "--n-boot", "30"],
                   result=_screen_result, expect=_expect_screen),
    "predict": Case("headstart.api:run_predict",
                    lambda tmp: ["predict", "RUN", "DATA", "-o", str(tmp / "p.jsonl"), "--format", "jsonl",
                                 "--batch-size", "8", "--device", "cpu", "--precision", "fp32", "--engine", "torch",
                                 "--workers", "1", "--on-bad-image", "skip", "--weights", "w.pth", "--n-boot", "20"],
                    result=_predict_result, expect=_expect_predict),
    "export": Case("headstart.api:run_export",
                   lambda tmp: ["export", "RUN", "-o", str(tmp / "m.onnx"), "--weights", "w.pth", "--tolerance",
                                "1e-5"],
                   result=_export_result,
                   expect=lambda bound, tmp: bound.arguments == {"run": "RUN", "output": str(tmp / "m.onnx"),
                                                                 "weights": "w.pth", "tolerance": 1e-5}),
    "demo": Case("headstart.api:run_demo", lambda tmp: ["demo", "-o", str(tmp / "d"), "--weights", "random", "--quick"],
                 result=lambda tmp: SimpleNamespace(seconds={"data": 1.0}, weights_note=None, report_html="r.html"),
                 expect=lambda bound, tmp: bound.arguments == {"output": tmp / "d", "weights": "random",
                                                               "quick": True}),
}


def command_paths() -> list[str]:
    """Every runnable command, groups expanded: "extract", "cache info", ..."""
    ctx = click.Context(cli)
    paths = []
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        if isinstance(command, click.Group):
            paths += [f"{name} {sub}" for sub in command.list_commands(ctx)]
        else:
            paths.append(name)
    return paths


def test_every_command_has_a_case():
    missing = sorted(set(command_paths()) - set(CASES))
    assert not missing, f"commands without a public-function case here: {missing}; give each its run_* function"
    assert not set(CASES) - set(command_paths())


@pytest.mark.parametrize("path", sorted(CASES))
def test_command_calls_its_public_function(path, tmp_path, monkeypatch):
    case = CASES[path]
    module_name, attr = case.target.split(":")
    module = __import__(module_name, fromlist=[attr])
    real = getattr(module, attr)
    signature = inspect.signature(real)

    def spy(*args, **kwargs):
        case.calls.append(signature.bind(*args, **kwargs))  # a keyword the function lacks fails here
        return real(*args, **kwargs) if case.result is None else case.result(tmp_path)

    monkeypatch.setattr(module, attr, spy)
    case.calls.clear()
    result = CliRunner().invoke(cli, case.argv(tmp_path))
    assert result.exit_code == 0, result.output
    assert case.calls, f"`headstart {path}` did not call {case.target}"
    bound = case.calls[0]
    check = case.expect(bound, tmp_path)
    assert check is None or check, f"`headstart {path}` called {case.target} with {bound.arguments}"
