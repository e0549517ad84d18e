"""Shared pieces of the reliability suite: a tiny phantom set, a reference cache, CLI helpers and a tally.

The tally collects how each injected fault ended (e.g. "detected-by-verify", "refused-with-one-line",
"harmless") and prints the counts at the end of the run, so the README figures come from a real run of
`make reliability` rather than from memory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
# Every extraction in this suite, in-process or in a subprocess: random weights, 32 px, batches of 4, no workers.
EXTRACT_OPTS = ["--weights", "random", "--image-size", "32", "--batch-size", "4", "--workers", "0"]

TALLY: dict[str, Counter] = defaultdict(Counter)  # group -> outcome -> count, printed at the end of the run


def pytest_terminal_summary(terminalreporter):
    if not TALLY:
        return
    terminalreporter.section("reliability outcomes")
    for group in sorted(TALLY):
        counts = TALLY[group]
        detail = ", ".join(f"{outcome} {n}" for outcome, n in sorted(counts.items()))
        terminalreporter.write_line(f"{group}: {sum(counts.values())} ({detail})")


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """32 phantom images (8 batches of 4): a kill can land before, between or after every batch."""
    from headstart.data.synthetic import make_phantom_dataset

    return make_phantom_dataset(tmp_path_factory.mktemp("reliability") / "cxr", n_train=16, n_test=8, val=8,
                                image_size=32, seed=0)


@pytest.fixture(scope="session")
def reference_cache(small_data, tmp_path_factory) -> Path:
    """An uninterrupted extraction of `small_data`: what every crashed-and-resumed run must equal."""
    out = tmp_path_factory.mktemp("reference") / "ref.h5"
    with torch_threads(1):
        result = invoke("extract", str(small_data), "-o", str(out), *EXTRACT_OPTS)
    assert result.exit_code == 0, result.output
    return out


class torch_threads:
    """Context manager for session fixtures, which run outside the per-test thread fixture."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        self.saved = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.saved)


def invoke(*args: str):
    """Run the CLI in-process; a result whose exception is anything but SystemExit is a bug (a traceback)."""
    from headstart.cli import cli

    result = CliRunner().invoke(cli, list(args), catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"`headstart {' '.join(args)}` crashed with {result.exception!r}:\n{result.output}")
    assert "Traceback" not in result.output, result.output
    return result


def error_lines(result) -> list[str]:
    """The `Error: ...` lines of a failed command (click prints exactly one for a HeadstartError)."""
    return [line for line in result.output.splitlines() if line.startswith("Error:")]


def assert_one_line_error(result, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    lines = error_lines(result)
    assert len(lines) == 1, result.output
    assert len(lines[0]) > len("Error: ") + 20, lines[0]  # says something, not just a bare exception name
    return lines[0]


def cli_env() -> dict[str, str]:
    """Environment of a `python -m headstart` subprocess: offline, one thread, this checkout first."""
    return {**os.environ, "HEADSTART_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def headstart_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "headstart", *args]


def run_headstart(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(headstart_cmd(*args), cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=timeout)


def features(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every feature set of a cache as stored (raw dtype), with its valid mask, read with plain h5py."""
    with h5py.File(path, "r") as f:
        return {name: (f["features"][name][()], f["valid"][name][()]) for name in f["features"]}


def samples(path: Path) -> dict[str, list]:
    """The /samples table columns (the /samples/meta group is compared by `assert_same_features`)."""
    with h5py.File(path, "r") as f:
        return {key: item[()].tolist() for key, item in f["samples"].items() if isinstance(item, h5py.Dataset)}


def image_meta(path: Path) -> dict[str, np.ndarray]:
    """Every /samples/meta field of a cache, read with plain h5py."""
    with h5py.File(path, "r") as f:
        return {name: ds[()] for name, ds in f["samples/meta"].items()}


def assert_same_features(a: Path, b: Path) -> None:
    fa, fb = features(a), features(b)
    assert fa.keys() == fb.keys()
    for name in fa:
        np.testing.assert_array_equal(fa[name][0], fb[name][0], err_msg=name)
        np.testing.assert_array_equal(fa[name][1], fb[name][1], err_msg=name)
    ma, mb = image_meta(a), image_meta(b)  # every row's metadata survives a resume too
    assert ma.keys() == mb.keys()
    for name in ma:
        np.testing.assert_array_equal(ma[name], mb[name], err_msg=f"meta/{name}")
