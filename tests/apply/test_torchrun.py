"""`torchrun -m headstart predict`: each rank scores a block of the images, rank 0 writes the table a single
process writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.apply.conftest import head_run
from tests.reliability.conftest import invoke

REPO = Path(__file__).resolve().parents[2]


def test_two_ranks_write_the_single_process_table(runs, tmp_path):
    run, data = head_run(runs, "float16", "linear"), runs["data"] / "test"
    args = [str(run), str(data), "--workers", "0", "--batch-size", "4", "--n-boot", "20"]
    single = invoke("predict", *args, "-o", str(tmp_path / "one.csv"))
    assert single.exit_code == 0, single.output
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HEADSTART_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "headstart",
           "predict", *args, "-o", str(tmp_path / "two.csv")]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = (tmp_path / "one.csv").read_text().splitlines(), (tmp_path / "two.csv").read_text().splitlines()
    assert one[0] == two[0] and len(one) == len(two) == 17  # header + the 16 test images
    for a, b in zip(one[1:], two[1:]):
        (ida, *pa, preda, labela), (idb, *pb, predb, labelb) = a.split(","), b.split(",")
        assert (ida, preda, labela) == (idb, predb, labelb)
        assert max(abs(float(x) - float(y)) for x, y in zip(pa, pb)) < 1e-5  # batch composition differs per rank
    assert (tmp_path / "two.metrics.json").is_file()
