"""kill -9 at every stage of the streaming cache writer, then a rerun: features bit-identical to an uninterrupted run.

A child process drives the writer (a new cache of one set, then adding a second set in place) and SIGKILLs itself
at one named stage: between a batch's rows landing in the set file and its journal record, half-way through a
journal record, after the set files are stamped, after the undo journal is written, in the middle of the in-place
add, after the add but before its commit, and after the commit but before the staging area is dropped. The rerun
of the same writes must leave a cache that passes `verify`, holds exactly the reference bytes, and no journal,
staging area or lock beside it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from headstart.cache import FeatureCache, verify_cache
from headstart.cache.schema import journal_path, lock_path, staging_dir
from tests.cache.synthetic import extract, make_spec, make_table
from tests.reliability.conftest import REPO, TALLY

# stage -> (module attribute to wrap, when to die: "before"/"after" the call, which call (1-based), which run)
STAGES = {
    "rows written, journal record not yet": ("headstart.cache.staging:StagingArea.append", "before", 3, "new"),
    "journal record torn half-way": ("headstart.cache.staging:StagingArea.append", "torn", 3, "new"),
    "new file: set file stamped, not published": ("headstart.cache.publish:_build", "before", 1, "new"),
    "new file: built, not renamed": ("headstart.io:replace_durably", "before", 2, "new"),
    "new file: published, staging not dropped": ("headstart.cache.staging:StagingArea.discard", "before", 1, "new"),
    "add: mid-loop": ("headstart.cache.staging:StagingArea.append", "before", 2, "add"),
    "add: undo journal written, file untouched": ("headstart.cache.publish:write_journal", "after", 1, "add"),
    "add: set copied into the file, not committed": ("headstart.cache.publish:_add", "after", 1, "add"),
    "add: half the set copied in": ("headstart.cache.publish:_add", "half", 1, "add"),
    "add: committed, staging not dropped": ("headstart.cache.publish:commit", "after", 1, "add"),
}

CHILD = textwrap.dedent("""
    import importlib, os, signal, sys
    target, when, call, run, path = sys.argv[1:6]
    call = int(call)
    module_name, attr = target.split(":")
    module = importlib.import_module(module_name)
    owner, name = (module, attr) if "." not in attr else (getattr(module, attr.split(".")[0]), attr.split(".")[1])
    real = getattr(owner, name)
    count = [0]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def wrapped(*args, **kwargs):
        count[0] += 1
        if count[0] != call:
            return real(*args, **kwargs)
        if when == "before":
            die()
        if when == "torn":  # half a journal record reaches the file, then the process dies
            self = args[0]
            real(*args, **kwargs)
            data = self.journal.read_bytes()
            with open(self.journal, "r+b") as f:
                f.truncate(len(data) - 40)
            die()
        if when == "half":  # only /valid/<name> is in the file: copy it, then die before the features
            import h5py
            from headstart.cache.schema import SET_VALID, VALID
            dst, plan, files = args[0], args[1], args[2]
            for set_name in plan.todo:
                with h5py.File(files[set_name], "r", locking=False) as src:
                    src.copy(src[SET_VALID], dst[VALID], name=set_name)
            dst.flush()
            die()
        out = real(*args, **kwargs)
        die()
        return out

    setattr(owner, name, wrapped)
    from tests.cache.synthetic import extract, make_spec, make_table
    table = make_table()
    a, b = make_spec(table), make_spec(table, "vit", dim=5, dtype="float32")
    extract(path, table, [a] if run == "new" else [a, b], invalid={4}, batch=5)
    sys.exit(3)  # not killed: the stage was never reached
""")


def _load(path: Path) -> dict:
    with FeatureCache(path) as cache:
        return {name: cache.load(name) for name in cache.feature_sets}


@pytest.mark.parametrize("stage", list(STAGES))
def test_writer_killed_at_each_stage_reruns_to_identical_features(stage, tmp_path):
    target, when, call, run = STAGES[stage]
    table = make_table()
    a, b = make_spec(table), make_spec(table, "vit", dim=5, dtype="float32")
    reference = tmp_path / "ref.h5"
    extract(reference, table, [a] if run == "new" else [a, b], invalid={4}, batch=5)
    path = tmp_path / "c.h5"
    if run == "add":
        extract(path, table, [a], invalid={4})
        before = _load(path)
    proc = subprocess.run([sys.executable, "-c", CHILD, target, when, str(call), run, str(path)], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    TALLY["writer kill -9 at a stage"][stage] += 1
    if run == "add" and path.exists() and not journal_path(path).exists():  # a reader sees the old or the new cache
        sets = _load(path)
        assert set(sets) in ({"resnet18"}, {"resnet18", "vit"})
        np.testing.assert_array_equal(sets["resnet18"][0], before["resnet18"][0])
    extract(path, table, [a] if run == "new" else [a, b], invalid={4}, batch=5)  # the rerun
    assert verify_cache(path) == []
    got, want = _load(path), _load(reference)
    assert got.keys() == want.keys()
    for name in want:
        assert got[name][0].tobytes() == want[name][0].tobytes() and np.array_equal(got[name][1], want[name][1])
    assert not staging_dir(path).exists() and not lock_path(path).exists() and not journal_path(path).exists()
    assert not list(tmp_path.glob(".c.h5.tmp-*"))
