"""`headstart finetune` at the command line: a real run's summary line, splits reuse, and one-line errors."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from headstart.cli import cli
from headstart.cache.view import dataset_with_cache_splits
from headstart.data.dataset import build_dataset
from headstart.data.types import SplitConfig
from headstart.errors import CacheMismatchError
from headstart.extract.config import ExtractConfig
from headstart.extract.runner import run_extract

TINY = ["-b", "resnet18", "--weights", "random", "--image-size", "32", "--batch-size", "16", "--workers", "0"]


def _invoke(args):
    result = CliRunner().invoke(cli, ["finetune", *args])
    assert "Traceback" not in result.output
    return result


def test_cli_run_prints_summary_and_writes_record(phantom_dir, tmp_path):
    result = _invoke([str(phantom_dir), "-o", str(tmp_path), *TINY, "--epochs", "1", "--freeze", "partial",
                      "--no-augment"])
    assert result.exit_code == 0, result.output
    record = tmp_path / "finetune_resnet18_freeze-partial-32px_s0" / "record.json"
    assert record.is_file()
    assert "test AUROC" in result.output and str(record) in result.output and "train" in result.output


@pytest.mark.parametrize("args, code, needle", [
    (["--freeze", "bogus"], 2, "bogus"),
    (["--epochs", "0"], 2, "--epochs"),
    (["--device", "tpu"], 2, "tpu"),
    (["--precision", "fp16", "--device", "cpu"], 2, "fp16 is CUDA-only"),
    (["--resume"], 2, "no checkpoint in"),
    (["--weights", "/nonexistent/weights.pt"], 2, "weights.pt"),
    (["-b", "nonet"], 2, "nonet"),
    (["--train-size", "ten"], 2, "ten"),
    (["--train-size", "k=2", "--train-fraction", "0.1"], 2, "not both"),
])
def test_bad_input_one_line_errors(phantom_dir, tmp_path, args, code, needle):
    result = _invoke([str(phantom_dir), "-o", str(tmp_path), *TINY, *args])
    assert result.exit_code == code, result.output
    assert needle in result.output


def test_missing_backbone_and_data_are_usage_or_data_errors(phantom_dir, tmp_path):
    assert _invoke([str(phantom_dir), "-o", str(tmp_path)]).exit_code == 2  # -b is required
    result = _invoke([str(tmp_path / "absent"), "-o", str(tmp_path), *TINY])
    assert result.exit_code in (1, 2) and "absent" in result.output


def test_bad_image_fails_naming_the_file(phantom_dir, tmp_path):
    data = tmp_path / "cxr"
    shutil.copytree(phantom_dir, data)
    victim = next((data / "train" / "NORMAL").glob("*.jpeg"))
    victim.write_bytes(b"\xff\xd8 truncated")
    result = _invoke([str(data), "-o", str(tmp_path / "runs"), *TINY, "--epochs", "1", "--freeze", "backbone"])
    assert result.exit_code == 1, result.output
    assert victim.name in result.output and len(result.output.strip().splitlines()) <= 3


def test_splits_match_extract_and_splits_from_reuses_a_cache(phantom_dir, tmp_path):
    cache = tmp_path / "c.h5"
    cfg = ExtractConfig(backbones=["resnet18"], weights="random", image_size=32, batch_size=16, workers=0)
    run_extract(data=str(phantom_dir), output=str(cache), config=cfg)
    from headstart.cache.reader import FeatureCache

    with FeatureCache(cache) as c:
        expected = list(zip(c.ids, c.splits))
    derived = build_dataset(str(phantom_dir), split_config=SplitConfig(), find_duplicates=False)  # as finetune does
    reused = dataset_with_cache_splits(str(phantom_dir), str(cache))
    assert [(s.id, s.split) for s in derived.samples] == expected
    assert [(s.id, s.split) for s in reused.samples] == expected

    other = tmp_path / "other"
    shutil.copytree(phantom_dir, other)
    next((other / "test" / "PNEUMONIA").glob("*.jpeg")).unlink()
    with pytest.raises(CacheMismatchError, match="images of .* are not in the cache|cache ids are not in"):
        dataset_with_cache_splits(str(other), str(cache))
    result = _invoke([str(other), "-o", str(tmp_path / "runs"), *TINY, "--splits-from", str(cache)])
    assert result.exit_code == 1 and "--splits-from" in result.output


def test_partial_torchrun_environment_is_one_line(phantom_dir, tmp_path, monkeypatch):
    """WORLD_SIZE without RANK/MASTER_ADDR (a hand-made launch): a usage error naming the variable, no hang."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    result = _invoke([str(phantom_dir), "-o", str(tmp_path), *TINY])
    assert result.exit_code == 2 and "WORLD_SIZE=2" in result.output and "torchrun" in result.output
    assert not tmp_path.joinpath("finetune_resnet18_freeze-none-32px_s0").exists()
