"""Kill -9 at seeded random points: every rerun of the same command finishes and equals an uninterrupted run.

Extraction: a `python -m headstart extract` subprocess is SIGKILLed when its row journal holds a random
number of finished batches (0 = during start-up and the data scan, all = during publication), plus a random
sub-batch delay. The same command is then rerun to completion (in-process, with the same thread count), and
the file must pass `cache verify` and hold exactly the features of the uninterrupted reference.

Fine-tune: `finetune --deterministic` is killed after a random delay and rerun with `--resume` (or without it,
when no checkpoint was written yet); the final weights and history must equal an uninterrupted run.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from headstart.cache.schema import lock_path, staging_dir
from headstart.cache.staging import StagingArea
from tests.reliability.conftest import (EXTRACT_OPTS, REPO, TALLY, assert_one_line_error, assert_same_features,
                                        cli_env, headstart_cmd, invoke, run_headstart)

N_BATCHES = 8  # small_data: 32 images in batches of 4
POLL_S = 0.01


def _staged_parts(cache: Path) -> int:
    """Batches journaled so far (one record each in the staging area's row journal)."""
    try:
        return len(StagingArea(staging_dir(cache), n_rows=1 << 40, manifest_hash="").batches())
    except (FileNotFoundError, OSError):
        return 0


def _kill_extraction(data: Path, cache: Path, rng: random.Random) -> str:
    """Start the extraction, SIGKILL it at a random point; returns where it was killed (an outcome class)."""
    target = rng.randint(0, N_BATCHES)  # finished batches to wait for; N_BATCHES: kill during publication
    extra = rng.uniform(0, 4.0) if target == 0 else rng.uniform(0, 0.02)  # start-up is long, a 32-px batch ~10 ms
    proc = subprocess.Popen(headstart_cmd("extract", str(data), "-o", str(cache), *EXTRACT_OPTS), cwd=REPO,
                            env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while _staged_parts(cache) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(POLL_S)
        time.sleep(extra)
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read()
            return "finished-before-kill"
        staged = _staged_parts(cache)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    if cache.exists():
        return "killed-after-publish"
    return "killed-before-first-batch" if staged == 0 else "killed-mid-extraction"


def _trial(seed: int, data: Path, reference: Path, tmp: Path) -> None:
    rng = random.Random(seed)
    cache = tmp / f"kill-{seed}.h5"
    outcome = _kill_extraction(data, cache, rng)
    TALLY["extract kill -9"][outcome] += 1
    if outcome in ("killed-before-first-batch", "killed-mid-extraction") and staging_dir(cache).exists():
        # A reader of the interrupted cache is told what happened, in one line.
        line = assert_one_line_error(invoke("cache", "info", str(cache)))
        assert "in progress or was interrupted" in line
    rerun = invoke("extract", str(data), "-o", str(cache), *EXTRACT_OPTS)
    assert rerun.exit_code == 0, rerun.output
    verify = invoke("cache", "verify", str(cache))
    assert verify.exit_code == 0 and verify.output.startswith("OK "), verify.output
    assert_same_features(cache, reference)
    assert not staging_dir(cache).exists() and not lock_path(cache).exists()
    assert not list(tmp.glob(f".{cache.name}.tmp-*"))  # no half-built file left behind


@pytest.mark.parametrize("seed", [0])  # one in the default suite; 12 more in the slow test below
def test_extraction_killed_at_random_point_resumes_to_reference(seed, small_data, reference_cache, tmp_path):
    _trial(seed, small_data, reference_cache, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 112))
def test_extraction_killed_at_random_point_resumes_to_reference_many(seed, small_data, reference_cache, tmp_path):
    _trial(seed, small_data, reference_cache, tmp_path)


# ----------------------------------------------------------------------------------------------- fine-tune
FINETUNE_OPTS = ["-b", "resnet18", "--weights", "random", "--epochs", "3", "--batch-size", "8", "--image-size", "32",
                 "--workers", "0", "--patience", "0", "--deterministic"]
HISTORY_TIMING = ("seconds", "images_per_second")  # wall-clock entries; everything else must be equal


def _finetune(data: Path, runs: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_headstart("finetune", str(data), "-o", str(runs), *FINETUNE_OPTS, *extra, timeout=600)


def _final_state(runs: Path) -> tuple[dict, list[dict], dict]:
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    record = json.loads((run_dir / "record.json").read_text())
    history = [{k: v for k, v in h.items() if k not in HISTORY_TIMING} for h in record["history"]]
    weights = {}
    for name in ("last.pt", "best.pt"):
        ckpt = torch.load(run_dir / "checkpoints" / name, map_location="cpu", weights_only=True)
        weights[name] = ckpt["model"]
    return weights, history, record["metrics"]


@pytest.fixture(scope="module")
def finetune_reference(small_data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("ft-ref")
    start = time.monotonic()
    proc = _finetune(small_data, runs)
    assert proc.returncode == 0, proc.stderr
    return runs, time.monotonic() - start


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(200, 210))
def test_finetune_killed_at_random_point_resumes_to_reference(seed, small_data, finetune_reference, tmp_path):
    ref_runs, duration = finetune_reference
    delay = random.Random(seed).uniform(0.2, 1.0) * duration
    proc = subprocess.Popen(headstart_cmd("finetune", str(small_data), "-o", str(tmp_path), *FINETUNE_OPTS),
                            cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
        outcome = "finished-before-kill"
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        last = list(tmp_path.glob("*/checkpoints/last.pt"))
        outcome = "killed-after-a-checkpoint" if last else "killed-before-first-checkpoint"
    TALLY["finetune kill -9"][outcome] += 1
    rerun = _finetune(small_data, tmp_path, "--resume")
    if outcome == "killed-before-first-checkpoint":
        assert rerun.returncode != 0 and "run without --resume" in rerun.stderr, rerun.stderr
        assert "Traceback" not in rerun.stderr
        rerun = _finetune(small_data, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    weights, history, metrics = _final_state(tmp_path)
    ref_weights, ref_history, ref_metrics = _final_state(ref_runs)
    assert history == ref_history
    assert metrics == ref_metrics
    for name in weights:
        assert weights[name].keys() == ref_weights[name].keys()
        for key, tensor in weights[name].items():
            assert torch.equal(tensor, ref_weights[name][key]), f"{name}:{key}"


@pytest.mark.slow
def test_finetune_killed_between_last_and_best_checkpoint(small_data, tmp_path, monkeypatch):
    """The narrowest kill point: after `last.pt` is renamed into place, before `best.pt` is published."""
    import headstart.finetune.train as train_module
    from headstart.data.types import SplitConfig
    from headstart.finetune.config import FinetuneConfig

    config = FinetuneConfig(backbone="resnet18", weights="random", epochs=1, batch_size=16, image_size=32, workers=0,
                            patience=0, deterministic=True, n_boot=20)

    def run(runs, resume=False):
        return train_module.run_finetune(data=str(small_data), runs_dir=str(runs), config=config,
                                         split_config=SplitConfig(), resume=resume)

    reference = run(tmp_path / "ref")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # stands in for SIGKILL at this instant: nothing after it runs

    monkeypatch.setattr(train_module, "publish_copy", killed)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "crash")
    monkeypatch.undo()
    resumed = run(tmp_path / "crash", resume=True)
    assert resumed.metrics == reference.metrics
