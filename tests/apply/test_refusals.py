"""Everything that can be wrong with a run, a model or an input ends in one clear line (exit 1; 2 for usage)."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.apply.conftest import copy_run, head_run
from tests.reliability.conftest import assert_one_line_error, invoke


class _Payload:
    """Unpickling this touches a marker file: proof that code ran on load."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def predict(run, data, tmp_path, *extra):
    return invoke("predict", str(run), str(data), "-o", str(tmp_path / "p.csv"), "--workers", "0", "--device", "cpu",
                  *extra)


def test_damaged_head_tensors(runs, tmp_path):
    run = copy_run(head_run(runs, "float16", "logreg"), tmp_path)
    data = bytearray((run / "head.safetensors").read_bytes())
    data[-3] ^= 0xFF  # one flipped bit pattern inside a weight: safetensors itself would not notice
    (run / "head.safetensors").write_bytes(bytes(data))
    line = assert_one_line_error(predict(run, runs["data"], tmp_path))
    assert "head.safetensors is damaged" in line
    assert not (tmp_path / "p.csv").exists()


def test_damaged_head_json(runs, tmp_path):
    run = copy_run(head_run(runs, "float16", "mlp"), tmp_path)
    (run / "head.json").write_text((run / "head.json").read_text()[:200])
    assert "cannot be read as JSON" in assert_one_line_error(predict(run, runs["data"], tmp_path))


def test_head_file_with_a_pickle_payload_is_never_unpickled(runs, tmp_path):
    """A pickle in place of the tensors, with head.json's sha256 updated to match: still refused, never run."""
    run = copy_run(head_run(runs, "float16", "linear"), tmp_path)
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"W": _Payload(marker)})
    (run / "head.safetensors").write_bytes(payload)
    _edit_json(run / "head.json", lambda info: info["tensors"].update(sha256=_sha256(payload)))
    line = assert_one_line_error(predict(run, runs["data"], tmp_path))
    assert "not a valid safetensors file" in line
    assert not marker.exists()


def test_npz_head_with_object_arrays_is_refused(runs, tmp_path):
    """The .npz form is read with allow_pickle=False: object arrays (pickles) are refused in one line."""
    run = copy_run(head_run(runs, "float16", "logreg"), tmp_path)
    marker = tmp_path / "pwned"
    np.savez(run / "head.npz", coef=np.array([_Payload(marker)], dtype=object))
    payload = (run / "head.npz").read_bytes()
    _edit_json(run / "head.json", lambda info: info["tensors"].update(file="head.npz", sha256=_sha256(payload)))
    line = assert_one_line_error(predict(run, runs["data"], tmp_path))
    assert "pickled objects" in line
    assert not marker.exists()


def test_fingerprint_mismatch_with_the_rebuilt_backbone(runs, tmp_path):
    """A head whose feature set was drawn by other random weights than the backbone rebuilt now."""
    run = copy_run(head_run(runs, "float16", "knn"), tmp_path)
    _edit_json(run / "head.json", lambda info: info["feature_set"].update(weights_seed=1))
    line = assert_one_line_error(predict(run, runs["data"], tmp_path))
    assert "rebuilt from seed 1 differ" in line


def test_weights_file_that_differs(runs, tmp_path):
    """A head trained on ImageNet weights whose file here has another sha256 (or is absent): one line, exit 1."""
    run = copy_run(head_run(runs, "float16", "logreg"), tmp_path)
    _edit_json(run / "head.json",
               lambda info: info["feature_set"].update(weights="file:mine.pth", weights_sha256="ab" * 32))
    line = assert_one_line_error(predict(run, runs["data"], tmp_path))
    assert "pass --weights PATH" in line and "mine.pth" in line
    import torch
    from headstart.backbones.registry import create_backbone

    path = tmp_path / "other.pth"
    torch.save(create_backbone("resnet18", weights="random", image_size=32, seed=3).module.state_dict(), path)
    line = assert_one_line_error(predict(run, runs["data"], tmp_path, "--weights", str(path)))
    assert "sha256" in line and "abababababab" in line


def test_cache_of_other_features_is_refused(runs, tmp_path):
    from tests.heads.synthetic_cache import make_cache

    other = make_cache(tmp_path / "other.h5", n=40, dim=512)  # a "resnet18" set of other weights/preprocessing
    run = head_run(runs, "float16", "logreg")
    result = invoke("predict", str(run), "-o", str(tmp_path / "p.csv"), "--cache", str(other))
    line = assert_one_line_error(result)
    assert "no feature set computed as the head's features were" in line and "preprocessing differs" in line


@pytest.fixture
def model(runs, tmp_path) -> Path:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "m" / "model.onnx"
    result = invoke("export", str(head_run(runs, "float16", "logreg")), "-o", str(out))
    assert result.exit_code == 0, result.output
    return out


def test_damaged_model_card(runs, tmp_path, model):
    card = model.with_suffix(".json")
    card.write_text(card.read_text()[:-40])
    assert "cannot be read as JSON" in assert_one_line_error(predict(model, runs["data"], tmp_path))
    card.unlink()
    assert "model.json is missing" in assert_one_line_error(predict(model, runs["data"], tmp_path))


def test_damaged_model_file(runs, tmp_path, model):
    model.write_bytes(model.read_bytes()[:-100])
    assert "damaged or was replaced" in assert_one_line_error(predict(model, runs["data"], tmp_path))


def test_model_input_of_the_wrong_size(runs, tmp_path, model):
    """A card that crops 48 px for a graph that takes 32 px: refused before any image is decoded."""
    _edit_json(model.with_suffix(".json"), lambda card: card["preprocessing"].update(input_size=48, resize_size=55))
    line = assert_one_line_error(predict(model, runs["data"], tmp_path))
    assert "takes inputs of shape (batch, 3, 32, 32)" in line and "(3, 48, 48)" in line


def test_scorer_refuses_a_batch_of_the_wrong_size(runs, model):
    import torch

    from headstart.apply.exported import ExportedScorer
    from headstart.errors import DataError

    scorer = ExportedScorer(model)
    assert scorer.score(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2, 2)
    with pytest.raises(DataError, match=r"takes inputs of shape \(batch, 3, 32, 32\); got \(2, 3, 40, 40\)"):
        scorer.score(torch.zeros(2, 3, 40, 40, dtype=torch.uint8))


def test_bad_image_fails_by_default_and_is_a_row_with_skip(runs, tmp_path):
    data = tmp_path / "new"
    shutil.copytree(runs["data"] / "test", data)
    broken = data / "NORMAL" / "broken.jpeg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    run = head_run(runs, "float16", "logreg")
    line = assert_one_line_error(predict(run, data, tmp_path))
    assert "broken.jpeg" in line and "--on-bad-image skip" in line
    result = predict(run, data, tmp_path, "--on-bad-image", "skip")
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in _csv(tmp_path / "p.csv")}
    bad = rows["NORMAL/broken.jpeg"]
    assert bad["proba_NORMAL"] == bad["proba_PNEUMONIA"] == bad["prediction"] == "" and "broken.jpeg" in bad["reason"]
    assert all(r["reason"] == "" and r["proba_NORMAL"] for i, r in rows.items() if i != "NORMAL/broken.jpeg")
    assert "skipped 1 unreadable image" in result.output


@pytest.mark.parametrize("argv", [
    ["predict", "RUN", "-o", "p.csv"],  # neither DATA nor --cache
    ["predict", "RUN", "DATA", "-o", "p.csv", "--cache", "c.h5"],  # both
    ["predict", "RUN", "DATA", "-o", "p.csv", "--split", "test"],  # --split without --cache
    ["export", "RUN", "-o", "model.txt"],  # not a model file name
])
def test_usage_errors_exit_2(argv):
    assert_one_line_error(invoke(*argv), code=2)


def test_not_a_run(tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke("predict", str(tmp_path / "empty"), str(tmp_path), "-o", str(tmp_path / "p.csv"))
    line = assert_one_line_error(result)
    assert "expected a run folder" in line


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _sha256(payload: bytes) -> str:
    import hashlib

    return hashlib.sha256(payload).hexdigest()


def _csv(path: Path) -> list[dict]:
    from tests.apply.conftest import read_table

    return read_table(path)
