"""`--crop`: a cache's crop is recorded and fingerprinted, and `predict` applies the crop the features were made with."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from tests.apply.conftest import read_table, record_vs_table
from tests.reliability.conftest import assert_one_line_error, invoke


@pytest.fixture(scope="module")
def full_crop(phantom_dir, tmp_path_factory):
    """A `--crop full` cache, its logreg run, and a `--crop center` cache of the same images."""
    from headstart.api import run_extract, run_heads

    root = tmp_path_factory.mktemp("crop")
    for crop in ("full", "center"):
        run_extract(phantom_dir, root / f"{crop}.h5", backbones=["resnet18"], weights="random", image_size=32,
                    crop=crop, batch_size=16, workers=0, feature_dtype="float32", device="cpu")
    [record] = run_heads(root / "full.h5", root / "runs", heads=["logreg"], sweep="quick", n_boot=20, device="cpu",
                         progress=False)
    return {"root": root, "run": root / "runs" / record.run_id}


def test_the_crop_is_recorded_and_changes_the_features(full_crop):
    root = full_crop["root"]
    with h5py.File(root / "full.h5") as full, h5py.File(root / "center.h5") as center:
        prep = json.loads(full["features/resnet18"].attrs["preprocessing"])
        assert prep["crop"] == "full"
        assert "crop" not in json.loads(center["features/resnet18"].attrs["preprocessing"])
        assert full["features/resnet18"].attrs["fingerprint"] != center["features/resnet18"].attrs["fingerprint"]
        assert not np.allclose(full["features/resnet18"][:], center["features/resnet18"][:])
    info = json.loads(invoke("cache", "info", str(root / "full.h5"), "--json").output)
    assert info["feature_sets"][0]["complete"] and info["feature_sets"][0]["crop"] == "full"


def test_another_crop_is_not_reused_silently(full_crop, phantom_dir):
    result = invoke("extract", str(phantom_dir), "-o", str(full_crop["root"] / "full.h5"), "-b", "resnet18",
                    "--weights", "random", "--image-size", "32", "--workers", "0", "--device", "cpu",
                    "--feature-dtype", "float32", "--crop", "pad")
    assert "--overwrite" in assert_one_line_error(result)


def test_predict_applies_the_runs_crop(full_crop, phantom_dir, tmp_path):
    run = full_crop["run"]
    result = invoke("predict", str(run), str(phantom_dir), "-o", str(tmp_path / "p.csv"), "--workers", "0",
                    "--n-boot", "20", "--device", "cpu")
    assert result.exit_code == 0, result.output
    expected, got, _ = record_vs_table(run, read_table(tmp_path / "p.csv"))
    assert np.abs(got - expected).max() <= 1e-4


def test_finetune_takes_the_crop_and_predict_reproduces_it(phantom_dir, tmp_path):
    from headstart.api import run_finetune

    record = run_finetune(phantom_dir, tmp_path / "runs", backbone="resnet18", weights="random", epochs=1,
                          batch_size=16, image_size=32, crop="pad", augment_preset="light", workers=0, patience=0,
                          n_boot=20, deterministic=True, device="cpu")
    assert record.run_id.endswith("crop-pad_s0") or "crop-pad" in record.run_id
    assert record.config["crop"] == "pad" and record.config["preprocessing"]["crop"] == "pad"
    assert record.config["augment"] == {"enabled": True, "preset": "light"}
    run = tmp_path / "runs" / record.run_id
    result = invoke("predict", str(run), str(phantom_dir), "-o", str(tmp_path / "p.csv"), "--workers", "0",
                    "--n-boot", "20", "--device", "cpu")
    assert result.exit_code == 0, result.output
    expected, got, _ = record_vs_table(run, read_table(tmp_path / "p.csv"))
    assert np.abs(got - expected).max() <= 1e-4


def test_an_exported_models_card_keeps_the_crop():
    """predict with an exported model reads its preprocessing (crop included) back from model.json."""
    from headstart.apply.card import RunCard, model_card, preprocessing_from
    from headstart.backbones.types import Preprocessing

    card = RunCard(run_id="r", strategy="cached-head", backbone="resnet18", classes=["a", "b"], threshold=0.5,
                   preprocessing=Preprocessing(input_size=32, resize_size=36, crop="pad"))
    written = model_card(card, exports={}, versions={})
    assert preprocessing_from(written["preprocessing"], where="model.json") == card.preprocessing
    assert "pad" in written["input"]["note"]
