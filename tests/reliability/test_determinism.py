"""The same seed gives the same splits, the same head selection and the same metrics, byte for byte.

Two extractions of one data set with the same seed store an identical /samples table; two `heads` runs on one
cache write record.json files that differ only in `created` and `timing` (wall-clock values). All on CPU.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.reliability.conftest import EXTRACT_OPTS, TALLY, invoke, samples

HEADS_OPTS = ["--head", "logreg", "--head", "linear", "--head", "knn", "--sweep", "quick", "--n-boot", "50",
              "--device", "cpu"]
WALL_CLOCK = ("created", "timing")  # the only record fields allowed to differ between two runs


def _flat(small_data: Path, root: Path) -> Path:
    """The phantom images as class folders only, so val and test are carved out by the seeded splitter."""
    for file in small_data.rglob("*.jpeg"):
        target = root / file.parent.name / file.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)
    return root


def test_same_seed_same_splits(small_data, tmp_path):
    data = _flat(small_data, tmp_path / "flat")
    tables = {}
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        out = tmp_path / f"{name}.h5"
        result = invoke("extract", str(data), "-o", str(out), *EXTRACT_OPTS, "--seed", seed)
        assert result.exit_code == 0, result.output
        tables[name] = samples(out)
    assert tables["a"] == tables["b"]
    assert len(set(tables["a"]["split"])) == 3
    assert tables["c"]["split"] != tables["a"]["split"]  # the seed does drive the carve-out
    TALLY["determinism"]["same seed: identical /samples"] += 1


def _records(runs: Path) -> dict[str, dict]:
    out = {}
    for path in sorted(runs.glob("*/record.json")):
        data = json.loads(path.read_text())
        out[path.parent.name] = (data, json.dumps({k: v for k, v in data.items() if k not in WALL_CLOCK},
                                                  sort_keys=True))
    return out


def test_heads_twice_give_identical_records(reference_cache, tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    for folder in runs:
        result = invoke("heads", str(reference_cache), "-o", str(folder), *HEADS_OPTS)
        assert result.exit_code == 0, result.output
    first, second = _records(runs[0]), _records(runs[1])
    assert first.keys() == second.keys() and len(first) == 3
    for run_id in first:
        a, b = first[run_id][0], second[run_id][0]
        assert a["config"] == b["config"], run_id  # same head selection (hyperparameters chosen on val)
        assert a["metrics"] == b["metrics"], run_id
        assert first[run_id][1] == second[run_id][1], run_id  # every byte apart from created/timing
    TALLY["determinism"]["heads twice: record.json equal apart from created/timing"] += len(first)
