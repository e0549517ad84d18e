"""Timers, peak memory on CPU, and the console table formats."""

import math
import time

import numpy as np
import pytest

from headstart.evaluation.table import aggregate_seeds, fmt_ci, fmt_mean_std, format_table
from headstart.evaluation.timing import Timer, describe_device, peak_memory_mb, reset_peak_memory


def test_timer_measures_wall_time_on_cpu():
    with Timer(device="cpu") as timer:
        time.sleep(0.02)
    assert 0.015 < timer.seconds < 2.0


def test_cpu_peak_memory_grows_with_an_allocation():
    reset_peak_memory("cpu")  # a no-op on CPU, must not fail
    before = peak_memory_mb()
    block = np.ones(80 * 2**20 // 8)  # 80 MiB touched
    after = peak_memory_mb()
    assert block.sum() > 0 and after >= before
    assert 80 <= after < 100_000  # MiB: the block alone is 80 MiB; KiB or bytes would be far larger
    assert describe_device(None) == "cpu"


def test_formats():
    assert fmt_ci(0.91234, [0.887, 0.9351]) == "0.912 [0.887, 0.935]"
    assert fmt_ci(float("nan"), [float("nan"), float("nan")]) == "-"
    assert fmt_mean_std(0.9, 0.0123) == "0.900 ± 0.012"
    assert fmt_mean_std(0.9, float("nan")) == "0.900"
    mean, std = aggregate_seeds([0.8, 0.9, float("nan"), 1.0])
    assert mean == pytest.approx(0.9) and std == pytest.approx(0.1)
    assert math.isnan(aggregate_seeds([0.7])[1]) and math.isnan(aggregate_seeds([])[0])


def test_table_aligns_columns():
    rows = [
        {"backbone": "resnet18", "auroc": fmt_ci(0.91, [0.88, 0.94]), "n": 624},
        {"backbone": "densenet121", "auroc": fmt_ci(None, None), "n": 16},
    ]
    lines = format_table(rows, [("backbone", "backbone"), ("auroc", "AUROC"), ("n", "n")]).splitlines()
    assert len(lines) == 4 and lines[1].startswith("-----------  ")
    assert lines[2].startswith("resnet18     0.910 [0.880, 0.940]  624")
    assert lines[3].endswith("-   16")  # missing metric shown as '-', numbers right-aligned
