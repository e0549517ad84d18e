"""A `heads --tta on` run: `predict` reproduces its record (images or cache), `export` refuses it in one line."""

from __future__ import annotations

import numpy as np
import pytest

from tests.apply.conftest import read_table, record_vs_table
from tests.reliability.conftest import assert_one_line_error
from tests.cli_run import invoke

EXTRACT = ["--weights", "random", "--image-size", "32", "--batch-size", "16", "--workers", "0", "--engine", "torch",
           "--feature-dtype", "float32"]



@pytest.fixture(scope="module")
def tta_run(phantom_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tta")
    cache, runs = folder / "c.h5", folder / "runs"
    r = invoke("extract", phantom_dir, "-o", cache, "-b", "resnet18", *EXTRACT, "--views", "2", "--tta", "2")
    assert r.exit_code == 0, r.output
    r = invoke("heads", cache, "-o", runs, "--head", "logreg", "--sweep", "quick", "--n-boot", "20", "--views", "on",
               "--tta", "on")
    assert r.exit_code == 0, r.output
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    return cache, run


def test_predict_on_images_reproduces_the_tta_record(tta_run, phantom_dir, tmp_path):
    _, run = tta_run
    assert "views-tta" in run.name
    r = invoke("predict", run, phantom_dir, "-o", tmp_path / "p.csv", "--workers", "0", "--n-boot", "20",
               "--device", "cpu", "--engine", "torch")
    assert r.exit_code == 0, r.output
    expected, got, _ = record_vs_table(run, read_table(tmp_path / "p.csv"))
    assert np.abs(got - expected).max() <= 1e-4
    # and the averaging matters: without it the same head gives other probabilities on these rows
    r = invoke("predict", run, "-o", tmp_path / "c.csv", "--cache", tta_run[0], "--split", "test", "--n-boot", "20")
    assert r.exit_code == 0, r.output
    expected, cached, _ = record_vs_table(run, read_table(tmp_path / "c.csv"))
    assert np.abs(cached - expected).max() <= 1e-5


def test_predict_cache_rows_without_tta_views_are_refused(tta_run, tmp_path):
    cache, run = tta_run
    r = invoke("predict", run, "-o", tmp_path / "p.csv", "--cache", cache, "--split", "train", "--n-boot", "20")
    assert r.exit_code != 0 and "no cached test-time views" in r.output and "--split test" in r.output


def test_export_refuses_tta_in_one_line(tta_run, tmp_path):
    _, run = tta_run
    line = assert_one_line_error(invoke("export", run, "-o", tmp_path / "m.onnx"))
    assert "test-time views" in line and "cannot bake" in line
    assert not (tmp_path / "m.onnx").exists()
