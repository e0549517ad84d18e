"""`torchrun -m headstart extract` on CPU (gloo): the published cache equals a single-process run.

Each test launches real ranks as subprocesses with `python -m torch.distributed.run --standalone` (a free port,
so concurrent test runs never collide). Faults are injected through a `sitecustomize.py` on PYTHONPATH that
patches one rank only, so the library carries no test hooks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from headstart.cache.schema import staging_dir
from headstart.cache.staging import StagingArea
from headstart.cli import cli

BASE = ["--weights", "random", "--image-size", "32", "--batch-size", "8", "--workers", "0"]
REPO = Path(__file__).resolve().parents[2]


def torchrun(nproc: int, data: Path, out: Path, *extra: str, hook: str | None = None, tmp: Path | None = None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HEADSTART_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    if hook:
        folder = tmp / "hook"
        folder.mkdir(exist_ok=True)
        (folder / "sitecustomize.py").write_text(textwrap.dedent(hook))
        env["PYTHONPATH"] = f"{folder}{os.pathsep}{REPO}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "headstart", "extract", str(data), "-o", str(out), *BASE, *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)


def single(data: Path, out: Path) -> None:
    result = CliRunner().invoke(cli, ["extract", str(data), "-o", str(out), *BASE])
    assert result.exit_code == 0, result.output


def read(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        out = {f"samples/{k}": f["samples"][k][...] for k in ("id", "label", "split", "group")}
        out["features"] = f["features/resnet18"][...].astype(np.float32)
        out["valid"] = f["valid/resnet18"][...]
        out["attrs"] = dict(f["features/resnet18"].attrs)
        out["classes"] = f.attrs["classes"]
        out.update({f"meta/{name}": ds[()] for name, ds in f["samples/meta"].items()})  # staged by each rank
    return out


def assert_same_cache(got: Path, want: Path) -> dict:
    a, b = read(got), read(want)
    assert a.keys() == b.keys()
    meta = [key for key in a if key.startswith("meta/")]
    for key in ("samples/id", "samples/label", "samples/split", "samples/group", "valid", "classes", *meta):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    np.testing.assert_allclose(a["features"], b["features"], atol=1e-3, rtol=1e-3)
    assert a["attrs"]["fingerprint"] == b["attrs"]["fingerprint"]
    return a


def test_two_ranks_equal_one_process(phantom_dir, tmp_path):
    single(phantom_dir, tmp_path / "one.h5")
    run = torchrun(2, phantom_dir, tmp_path / "two.h5")
    assert run.returncode == 0, run.stderr[-3000:]
    got = assert_same_cache(tmp_path / "two.h5", tmp_path / "one.h5")
    n = len(got["samples/id"])
    assert got["attrs"]["world_size"] == 2 and bool(got["attrs"]["complete"])
    assert run.stdout.count("extracted resnet18") == 1  # only rank 0 speaks
    assert f"for {n} images" in run.stdout and "on 2 ranks" in run.stdout
    assert "Traceback" not in run.stderr and not staging_dir(tmp_path / "two.h5").exists()


@pytest.mark.slow
def test_more_ranks_than_images(tmp_path, phantom_dir):
    data = tmp_path / "tiny"
    data.mkdir()
    images = sorted((phantom_dir / "train").rglob("*.jpeg"))
    for i, src in enumerate((images[0], images[-1])):
        (data / f"im{i}.jpeg").write_bytes(src.read_bytes())
    (data / "m.csv").write_text("path,label,split\nim0.jpeg,A,train\nim1.jpeg,B,train\n")
    single(data / "m.csv", tmp_path / "one.h5")
    run = torchrun(3, data / "m.csv", tmp_path / "three.h5")  # rank 2 has an empty shard and just waits
    assert run.returncode == 0, run.stderr[-3000:]
    assert_same_cache(tmp_path / "three.h5", tmp_path / "one.h5")


DIE_AFTER_TWO_BATCHES = """
    import os
    if os.environ.get("RANK") == "1":
        import headstart.cache.stager as s
        real, calls = s.Stager.write_batch, []

        def write_batch(self, *args, **kwargs):
            real(self, *args, **kwargs)
            calls.append(1)
            if len(calls) == 2:
                os.kill(os.getpid(), 9)  # rank 1 dies mid-shard, as on a node failure

        s.Stager.write_batch = write_batch
"""


@pytest.mark.slow
def test_rerun_after_a_dead_rank_resumes(phantom_dir, tmp_path):
    out = tmp_path / "two.h5"
    dead = torchrun(2, phantom_dir, out, hook=DIE_AFTER_TWO_BATCHES, tmp=tmp_path)
    assert dead.returncode != 0 and not out.exists()
    journal = StagingArea(staging_dir(out), n_rows=1 << 40, manifest_hash="").batches()
    assert sum(b.rank == 1 for b in journal) == 2  # rank 1's finished batches survived
    rerun = torchrun(2, phantom_dir, out)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming:" in rerun.stderr
    single(phantom_dir, tmp_path / "one.h5")
    assert_same_cache(out, tmp_path / "one.h5")


OTHER_BATCH_SIZE_ON_RANK_1 = """
    import os
    if os.environ.get("RANK") == "1":
        import headstart.extract.runner as r
        real = r.run_extract

        def run_extract(*, data, output, config):
            config.batch_size = 16
            return real(data=data, output=output, config=config)

        r.run_extract = run_extract
"""


@pytest.mark.slow
def test_ranks_started_with_different_arguments_are_refused(phantom_dir, tmp_path):
    out = tmp_path / "two.h5"
    run = torchrun(2, phantom_dir, out, hook=OTHER_BATCH_SIZE_ON_RANK_1, tmp=tmp_path)
    assert run.returncode != 0 and not out.exists() and not staging_dir(out).exists()
    assert "Error: rank 1 was started with different arguments (batch_size: 16 vs rank 0's 8)" in run.stderr
    # torchrun's launcher prints its own ChildFailedError traceback; no headstart frame may appear in it.
    assert f'File "{REPO / "headstart"}' not in run.stderr
