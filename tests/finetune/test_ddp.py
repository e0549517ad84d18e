"""DDP fine-tuning under a real `torchrun` launch: 2 CPU processes, gloo, on a tiny phantom set.

Val and test have odd sizes, so each rank's shard is padded (as DistributedSampler pads) and the gather has to
drop the padding for the record to cover every sample exactly once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from headstart.backbones.registry import create_model
from headstart.data.dataset import build_dataset
from headstart.data.types import SplitConfig
from headstart.evaluation.bootstrap import evaluate
from headstart.finetune.data import EpochSampler, SplitImages, make_loader
from headstart.finetune.epoch import StepContext, evaluate_split

REPO = Path(__file__).resolve().parents[2]
ARGS = ["-b", "resnet18", "--weights", "random", "--image-size", "32", "--epochs", "1", "--batch-size", "4",
        "--workers", "0", "--patience", "0"]


def torchrun(args: list[str], *, tmp: Path, script: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --standalone --nproc_per_node=2 ...` with one thread per rank."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HEADSTART_OFFLINE": "1", "TORCH_HOME": str(tmp / "torch_home"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    target = [str(script)] if script else ["-m", "headstart", "finetune"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *target, *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from headstart.data.synthetic import make_phantom_dataset

    return make_phantom_dataset(tmp_path_factory.mktemp("ddp") / "cxr", n_train=40, n_test=15, val=7, image_size=32,
                                seed=1)


@pytest.fixture(scope="module")
def ddp_run(data, tmp_path_factory):
    """One 1-epoch, 2-rank fine-tune; returns (runs folder, completed process)."""
    tmp = tmp_path_factory.mktemp("ddp_runs")
    runs = tmp / "runs"
    done = torchrun([str(data), "-o", str(runs), *ARGS], tmp=tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    return runs, done


def _record(runs: Path) -> dict:
    (path,) = runs.glob("*/record.json")
    return json.loads(path.read_text())


def _split_ids(data: Path) -> dict[str, list]:
    dataset = build_dataset(data, split_config=SplitConfig())
    return {split: [s for s in dataset.samples if s.split == split] for split in ("train", "val", "test")}


def test_two_ranks_write_exactly_one_record_and_one_summary(ddp_run):
    runs, done = ddp_run
    assert [p.relative_to(runs).parts[1] for p in runs.rglob("record.json")] == ["record.json"]
    record = _record(runs)
    assert record["strategy"] == "finetune" and record["config"]["world_size"] == 2
    assert record["config"]["global_batch_size"] == 8 and len(record["history"]) == 1
    assert done.stdout.count("record.json") == 1  # rank 1 prints no summary line
    assert done.stderr.count("epoch 1/1: train loss") == 1  # ... and logs only warnings
    assert "Traceback" not in done.stderr
    leftovers = [p.name for p in runs.rglob("*") if ".tmp-" in p.name]
    assert leftovers == []


def test_predictions_cover_every_val_and_test_sample_once(ddp_run, data):
    record = _record(ddp_run[0])
    expected = _split_ids(data)
    for split in ("val", "test"):
        predictions = record["predictions"][split]
        ids = predictions["ids"]
        assert len(ids) == len(set(ids)) == len(expected[split]) and len(expected[split]) % 2 == 1
        assert ids == [s.id for s in expected[split]]  # the single-process split, in its order
        assert predictions["y_true"] == [s.label for s in expected[split]]
        assert np.asarray(predictions["proba"]).shape == (len(ids), 2)


def test_metrics_are_computed_on_the_whole_gathered_split(ddp_run):
    record = _record(ddp_run[0])
    for split in ("val", "test"):
        predictions = record["predictions"][split]
        again = evaluate(np.asarray(predictions["y_true"]), np.asarray(predictions["proba"]),
                         threshold=record["threshold"], n_boot=record["config"]["n_boot"], seed=record["seed"])
        for key in ("auroc", "accuracy", "balanced_accuracy", "sensitivity", "specificity"):
            assert record["metrics"][split][key] == pytest.approx(again[key], abs=1e-12), (split, key)
    assert record["history"][0]["val_auroc"] == pytest.approx(record["metrics"]["val"]["auroc"], abs=1e-12)


def test_ddp_evaluation_equals_a_single_process_evaluation_of_the_same_weights(ddp_run, data):
    runs, _ = ddp_run
    record = _record(runs)
    best = torch.load(runs / record["run_id"] / "checkpoints" / "best.pt", weights_only=True)
    net, prep, _ = create_model("resnet18", num_classes=2, weights="random", image_size=32, seed=0)
    net.load_state_dict(best["model"])
    dataset = build_dataset(data, split_config=SplitConfig())
    test = _split_ids(data)["test"]
    loader = make_loader(SplitImages(dataset.source, test, prep), EpochSampler(len(test), seed=0, shuffle=False),
                         batch_size=4, workers=0, pin_memory=False)
    ctx = StepContext(device=torch.device("cpu"), prep=prep, amp_dtype=None, progress=False)
    alone = evaluate_split(net, loader, criterion=torch.nn.CrossEntropyLoss(), ctx=ctx)
    np.testing.assert_allclose(np.asarray(record["predictions"]["test"]["proba"]), alone["proba"], atol=1e-5)


@pytest.mark.slow  # a second torchrun launch: ~10 s on an idle 2-core machine, a minute when it is shared
def test_every_rank_resumes_from_rank_zeros_checkpoint(ddp_run, data, tmp_path):
    """A finished run resumed with the same command: both ranks load rank 0's files, nothing retrains, and the
    record comes out the same."""
    runs, _ = ddp_run
    first = _record(runs)
    done = torchrun([str(data), "-o", str(runs), *ARGS, "--resume"], tmp=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    again = _record(runs)
    assert [h["epoch"] for h in again["history"]] == [1]
    np.testing.assert_allclose(again["predictions"]["test"]["proba"], first["predictions"]["test"]["proba"],
                               atol=1e-6)


@pytest.mark.slow  # another torchrun launch (start-up cost only: the refusal comes before the model is built)
def test_ranks_started_with_different_arguments_are_refused(data, tmp_path):
    script = tmp_path / "mismatched.py"
    script.write_text(
        "import os, sys\n"
        "from headstart.cli import main\n"
        "lr = '0.001' if os.environ['RANK'] == '0' else '0.01'\n"
        f"sys.argv = ['headstart', 'finetune', {str(data)!r}, '-o', {str(tmp_path / 'runs')!r}, *{ARGS!r},"
        " '--lr', lr]\n"
        "main()\n"
    )
    done = torchrun([], tmp=tmp_path, script=script)
    assert done.returncode != 0
    assert "rank 1 was started with different arguments (lr: 0.01 vs rank 0's 0.001)" in done.stderr
    assert not (tmp_path / "runs").exists()
