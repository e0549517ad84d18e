"""The one engine path and the one decode loop (`extract.pipeline`) that extract, predict and screen share."""

from __future__ import annotations

import ast
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from headstart.backbones.types import Preprocessing
from headstart.data.dataset import build_dataset
from headstart.data.types import SplitConfig
from headstart.engines import FirstBatchCheck, TorchEngine
from headstart.engines.resolve import CHECK_ROWS
from headstart.errors import DataError
from headstart.extract.features import build_feature_models
from headstart.extract.loader import geometry_key
from headstart.extract.pipeline import image_batches, start_engines

CPU = torch.device("cpu")
PREP = Preprocessing(input_size=16, resize_size=18)
PACKAGE = Path(__file__).resolve().parents[2] / "headstart"


@pytest.fixture(scope="module")
def bad_data(phantom_dir, tmp_path_factory) -> tuple[Path, Path]:
    data = tmp_path_factory.mktemp("bad") / "cxr"
    shutil.copytree(phantom_dir, data)
    first = sorted((data / "train" / "NORMAL").glob("*.jpeg"))[0]
    first.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return data, first


def batches(dataset, rows, **kw):
    args = dict(decode="cpu", batch_size=8, workers=0, threads=0, device=CPU, on_bad_image="skip", progress=False)
    return list(image_batches(dataset.source, dataset.samples, np.asarray(rows), [PREP], **{**args, **kw}))


def test_every_row_comes_once_in_order_and_a_bad_image_is_flagged(bad_data, caplog):
    data, broken = bad_data
    dataset = build_dataset(data, split_config=SplitConfig(), find_duplicates=False)
    bad = next(i for i, s in enumerate(dataset.samples) if Path(s.path) == broken)
    rows = np.arange(len(dataset.samples))
    with caplog.at_level(logging.WARNING, logger="headstart"):
        got = batches(dataset, rows)
    assert np.array_equal(np.concatenate([b["row"].numpy() for b, _ in got]), rows)
    ok = np.concatenate([ok for _, ok in got])
    assert np.flatnonzero(~ok).tolist() == [bad]
    # exactly one warning for the one bad image (other loggers' records may reach caplog, depending on test order)
    assert len([m for m in caplog.messages if m.startswith("skipping bad image")]) == 1
    with pytest.raises(DataError, match="fix or remove the file, or pass --on-bad-image skip"):
        batches(dataset, rows, on_bad_image="fail")
    assert batches(dataset, np.zeros(0, dtype=np.int64)) == []


def test_rows_already_decoded_are_not_decoded_again(phantom_dir):
    dataset = build_dataset(phantom_dir, split_config=SplitConfig(), find_duplicates=False)
    key = geometry_key(PREP)
    marked = {3: {"row": 3, "ok": True, "error": "", "meta": "", key: torch.full((3, 16, 16), 7, dtype=torch.uint8)},
              99: {"row": 99, "ok": True, "error": "", "meta": "", key: torch.zeros(3, 16, 16, dtype=torch.uint8)}}
    ((batch, ok),) = batches(dataset, [2, 3, 4], decoded=marked)  # row 99 is not asked for: left out
    assert ok.all() and batch["row"].tolist() == [2, 3, 4]
    assert (batch[key][1] == 7).all() and not (batch[key][0] == 7).all()


def test_start_engines_decodes_and_checks_only_for_onnxruntime(phantom_dir):
    pytest.importorskip("onnxruntime")
    dataset = build_dataset(phantom_dir, split_config=SplitConfig(), find_duplicates=False)
    models = build_feature_models(["resnet18"], weights="random", image_size=32, seed=0)
    assert start_engines(models, dataset, spec="torch", device=CPU, amp_dtype=None) == {}  # nothing decoded
    assert isinstance(models[0].engine, TorchEngine)
    probed = start_engines(models, dataset, spec="auto", device=CPU, amp_dtype=None)
    assert sorted(probed) == list(range(CHECK_ROWS))  # the first real rows, kept for the loop
    engine = models[0].engine
    assert isinstance(engine, FirstBatchCheck) and engine.active is not None  # decided before any batch
    assert engine.name == "onnxruntime" and engine.max_abs_diff <= 1e-4
    # a settle rule may keep a stored engine, or attach none to a backbone whose sets are all reused
    fresh = build_feature_models(["resnet18"], weights="random", image_size=32, seed=0)
    probed = start_engines(fresh, dataset, spec="auto", device=CPU, amp_dtype=None,
                           settle=lambda choice: {"resnet18": (None, "")})
    assert probed == {} and fresh[0].engine is None


def test_extract_predict_and_screen_take_the_one_path():
    """No caller but `extract.pipeline` chooses an engine, probes rows or builds a decode loader itself."""
    owned = {"choose_engine", "probe_images", "probe_batch", "make_loader", "DeviceJpegDecoder"}
    for path in ["extract/runner.py", "apply/predict.py", "studies/screen.py"]:
        tree = ast.parse((PACKAGE / path).read_text(encoding="utf-8"))
        called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        assert not (called & owned) - ({"choose_engine"} if path == "extract/runner.py" else set()), path
        assert {"start_engines"} <= called, path
    screen = (PACKAGE / "studies/screen.py").read_text(encoding="utf-8")
    assert ".stager" not in screen and ".staging" not in screen  # the cache's public writer API only
