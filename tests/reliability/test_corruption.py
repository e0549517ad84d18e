"""Seeded random byte flips and truncations of a finished cache, a fine-tune checkpoint and run records.

Every damaged file goes through the commands that read it. None may crash (a traceback); each variant ends in
one of three outcome classes, counted in the run's "reliability outcomes" summary:
- detected-by-verify: `cache verify` exits 1 and names the problem;
- refused-with-one-line: the command exits 1 with one `Error:` line;
- harmless: the flip hit bytes nothing reads (free space, padding) and the command gives the correct result.
A command that succeeds with a different result than on the pristine file is a silent error and fails the test.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tests.reliability.conftest import TALLY, assert_one_line_error, features, invoke, samples

N_CACHE_VARIANTS = 120
HEADS_OPTS = ["--head", "logreg", "--sweep", "quick", "--n-boot", "20"]


def damage(raw: bytes, seed: int) -> tuple[str, bytes]:
    """One seeded variant: a truncation (every 4th seed) or 1-8 flipped bits at random offsets."""
    rng = random.Random(seed)
    if seed % 4 == 0:
        return "truncate", raw[:rng.randrange(len(raw))]
    data = bytearray(raw)
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return "flip", bytes(data)


def _attrs(path: Path) -> dict:
    """Every attribute of the file and of its feature sets, as stored."""
    out = {}
    with h5py.File(path, "r") as f:
        for key, value in f.attrs.items():
            out[f"/{key}"] = value
        for name, ds in f["features"].items():
            for key, value in ds.attrs.items():
                out[f"/features/{name}/{key}"] = value
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in out.items()}


def _same_content(path: Path, reference: Path) -> bool:
    try:
        a, b = features(path), features(reference)
        return (a.keys() == b.keys() and all(np.array_equal(a[k][0], b[k][0]) and np.array_equal(a[k][1], b[k][1])
                                             for k in a)
                and samples(path) == samples(reference) and _attrs(path) == _attrs(reference))
    except Exception:  # noqa: BLE001 - h5py cannot read it: certainly not the same content
        return False


def _check_cache_variant(seed: int, reference: Path, tmp: Path) -> str:
    kind, data = damage(reference.read_bytes(), seed)
    path = tmp / f"v{seed}.h5"
    path.write_bytes(data)
    verify = invoke("cache", "verify", str(path))
    info = invoke("cache", "info", "--json", str(path))
    if info.exit_code != 0:
        assert_one_line_error(info)
    if verify.exit_code == 0:
        # verify passed: the flip must have been in bytes that nothing reads
        assert _same_content(path, reference), f"seed {seed}: verify passed on a cache whose content changed"
        assert info.exit_code == 0
        outcome = "harmless"
    else:
        assert_one_line_error(verify)
        assert verify.output.count("problem: ") >= 1, verify.output
        outcome = "detected-by-verify"
    TALLY[f"cache {kind} -> verify"][outcome] += 1
    return outcome


def test_damaged_cache_is_detected_or_harmless(reference_cache, tmp_path):
    outcomes = [_check_cache_variant(seed, reference_cache, tmp_path) for seed in range(N_CACHE_VARIANTS)]
    assert outcomes.count("detected-by-verify") > N_CACHE_VARIANTS // 2  # the suite does damage what matters


def _heads_metrics(runs: Path) -> dict:
    return {p.parent.name: json.loads(p.read_text())["metrics"] for p in sorted(runs.glob("*/record.json"))}


@pytest.fixture(scope="module")
def pristine_heads(reference_cache, tmp_path_factory):
    runs = tmp_path_factory.mktemp("heads-pristine")
    result = invoke("heads", str(reference_cache), "-o", str(runs), *HEADS_OPTS)
    assert result.exit_code == 0, result.output
    return _heads_metrics(runs)


def _heads_on_variant(seed: int, reference: Path, pristine: dict, tmp: Path) -> None:
    kind, data = damage(reference.read_bytes(), seed)
    path = tmp / f"v{seed}.h5"
    path.write_bytes(data)
    runs = tmp / f"runs{seed}"
    result = invoke("heads", str(path), "-o", str(runs), *HEADS_OPTS)
    if result.exit_code == 0:
        assert _heads_metrics(runs) == pristine, f"seed {seed}: heads succeeded with different metrics"
        outcome = "harmless"
    else:
        assert_one_line_error(result)
        outcome = "refused-with-one-line"
    TALLY[f"cache {kind} -> heads"][outcome] += 1


@pytest.mark.parametrize("seed", [1, 2, 4, 7])  # two flips, two truncations; the full set is in the slow test
def test_heads_on_damaged_cache_refuses_or_matches(seed, reference_cache, pristine_heads, tmp_path):
    _heads_on_variant(seed, reference_cache, pristine_heads, tmp_path)


@pytest.mark.slow
def test_heads_on_every_damaged_cache_refuses_or_matches(reference_cache, pristine_heads, tmp_path):
    for seed in range(N_CACHE_VARIANTS):
        _heads_on_variant(seed, reference_cache, pristine_heads, tmp_path)


# ---------------------------------------------------------------------------------------------- checkpoints
def _small_checkpoint(path: Path) -> dict:
    """A checkpoint in the fine-tune format (save_checkpoint), small enough to damage 100 times in a second."""
    from headstart.finetune.checkpoint import save_checkpoint

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    optimizer = torch.optim.AdamW(net.parameters())
    net(torch.randn(4, 16)).sum().backward()
    optimizer.step()
    save_checkpoint(path, {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 0,
                           "history": [{"epoch": 1, "train_loss": 0.5}], "fingerprint": {}})
    return {"model": {k: v.clone() for k, v in net.state_dict().items()}, "epoch": 0}


def _checkpoint_outcomes(tmp: Path, n: int) -> list[str]:
    from headstart.errors import HeadstartError
    from headstart.finetune.checkpoint import load_checkpoint

    pristine = tmp / "last.pt"
    expected = _small_checkpoint(pristine)
    raw = pristine.read_bytes()
    outcomes = []
    for seed in range(n):
        kind, data = damage(raw, seed)
        path = tmp / "damaged.pt"
        path.write_bytes(data)
        try:
            loaded = load_checkpoint(path)
        except HeadstartError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
            outcome = "refused-with-one-line"
        else:  # any other exception propagates: that is a crash, and fails the test
            same = loaded.get("epoch") == expected["epoch"] and all(
                torch.equal(loaded["model"][k], v) for k, v in expected["model"].items())
            outcome = "harmless" if same else "loaded-silently-changed"
        TALLY[f"checkpoint {kind} -> load"][outcome] += 1
        outcomes.append(outcome)
    return outcomes


def test_damaged_checkpoint_never_crashes(tmp_path):
    outcomes = _checkpoint_outcomes(tmp_path, 100)
    assert outcomes.count("refused-with-one-line") > 30


def test_damaged_checkpoint_is_never_loaded_silently(tmp_path):
    outcomes = []
    from headstart.errors import HeadstartError
    from headstart.finetune.checkpoint import load_checkpoint

    pristine = tmp_path / "last.pt"
    expected = _small_checkpoint(pristine)
    raw = pristine.read_bytes()
    for seed in range(100):
        _, data = damage(raw, seed)
        (tmp_path / "d.pt").write_bytes(data)
        try:
            loaded = load_checkpoint(tmp_path / "d.pt")
        except HeadstartError:
            continue
        outcomes.append(all(torch.equal(loaded["model"][k], v) for k, v in expected["model"].items()))
    assert all(outcomes), f"{outcomes.count(False)} of 100 damaged checkpoints loaded with changed weights"


@pytest.fixture(scope="module")
def finetune_run(small_data, tmp_path_factory):
    """A real one-epoch fine-tune run folder (resnet18, 32 px) whose last.pt the CLI tests damage."""
    runs = tmp_path_factory.mktemp("ft-corrupt")
    result = invoke("finetune", str(small_data), "-o", str(runs), "-b", "resnet18", "--weights", "random",
                    "--epochs", "1", "--batch-size", "16", "--image-size", "32", "--workers", "0", "--patience", "0",
                    "--deterministic", "--no-augment")
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    return runs, run_dir


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(8))
def test_finetune_resume_with_damaged_checkpoint(seed, small_data, finetune_run, tmp_path):
    """`finetune --resume` on a damaged last.pt: one line and exit 1, never a traceback (2 epochs requested)."""
    runs, run_dir = finetune_run
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    last = copy / "checkpoints" / "last.pt"
    kind, data = damage(last.read_bytes(), seed)
    last.write_bytes(data)
    result = invoke("finetune", str(small_data), "-o", str(tmp_path), "-b", "resnet18", "--weights", "random",
                    "--epochs", "2", "--batch-size", "16", "--image-size", "32", "--workers", "0", "--patience", "0",
                    "--deterministic", "--no-augment", "--resume")
    if result.exit_code == 0:
        outcome = "resumed"  # the flip was harmless (a damaged tensor fails the content digest)
    else:
        assert_one_line_error(result, code=result.exit_code)
        outcome = "refused-with-one-line"
    TALLY[f"checkpoint {kind} -> finetune --resume"][outcome] += 1


# ---------------------------------------------------------------------------------------------- run records
def _compare_summary(runs: Path, out: Path):
    result = invoke("compare", str(runs), "-o", str(out))
    return result, (json.loads((out / "summary.json").read_text()) if result.exit_code == 0 else None)


@pytest.fixture(scope="module")
def pristine_runs(reference_cache, tmp_path_factory):
    runs = tmp_path_factory.mktemp("records")
    result = invoke("heads", str(reference_cache), "-o", str(runs), "--head", "logreg", "--head", "knn",
                    "--sweep", "quick", "--n-boot", "20")
    assert result.exit_code == 0, result.output
    result, summary = _compare_summary(runs, tmp_path_factory.mktemp("report"))
    assert result.exit_code == 0, result.output
    return runs, summary


def _comparable(summary: dict) -> str:
    return json.dumps({k: v for k, v in summary.items() if k not in ("created", "runs_dir", "output_dir")},
                      sort_keys=True)


def _compare_on_variant(seed: int, pristine_runs, tmp: Path) -> None:
    runs, pristine_summary = pristine_runs
    copy = tmp / f"runs{seed}"
    shutil.copytree(runs, copy)
    records = sorted(copy.glob("*/record.json"))
    target = records[seed % len(records)]
    kind, data = damage(target.read_bytes(), seed)
    target.write_bytes(data)
    result, summary = _compare_summary(copy, tmp / f"report{seed}")
    if result.exit_code == 0 and "skipping unreadable record" in result.output:
        assert f"{len(records) - 1} runs" in result.output, result.output  # the others are still compared
        outcome = "skipped-with-warning"
    elif result.exit_code == 0 and _comparable(summary) == _comparable(pristine_summary):
        outcome = "harmless"
    elif result.exit_code == 0:
        # JSON records carry no checksum, so the README promises only this: a flip that still parses is
        # reported as written. The record is compared (not dropped), and what changed is in the file itself,
        # never a value that compare altered on its own.
        assert f"{len(records)} runs" in result.output, result.output
        pristine_record = json.loads((runs / target.parent.name / target.name).read_text())
        assert json.loads(data) != pristine_record, f"seed {seed}: the summary changed but the record did not"
        outcome = "accepted-changed-values"
    else:
        assert_one_line_error(result)
        outcome = "refused-with-one-line"
    TALLY[f"record.json {kind} -> compare"][outcome] += 1


@pytest.mark.parametrize("seed", [0, 3])
def test_compare_on_damaged_record(seed, pristine_runs, tmp_path):
    _compare_on_variant(seed, pristine_runs, tmp_path)


def test_compare_reports_a_changed_record_as_written(pristine_runs, tmp_path):
    """The outcome the seeded flips reach only by chance ("accepted-changed-values"), made on purpose: a
    record whose test AUROC was altered but still parses is compared with the other runs, at the written value."""
    runs, _ = pristine_runs
    copy = tmp_path / "runs"
    shutil.copytree(runs, copy)
    records = sorted(copy.glob("*/record.json"))
    target = records[0]
    data = json.loads(target.read_text())
    data["metrics"]["test"]["auroc"] = 0.123
    target.write_text(json.dumps(data))
    result, summary = _compare_summary(copy, tmp_path / "report")
    assert result.exit_code == 0 and f"{len(records)} runs" in result.output, result.output
    (row,) = [r for d in summary["datasets"] for r in d["rows"] if data["run_id"] in r["run_ids"]]
    assert row["test"]["auroc"]["mean"] == 0.123


@pytest.mark.slow
def test_compare_on_every_damaged_record(pristine_runs, tmp_path):
    for seed in range(100):
        _compare_on_variant(seed, pristine_runs, tmp_path)
