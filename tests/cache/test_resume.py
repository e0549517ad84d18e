"""Crashes, kill -9, torn journal records, damaged set files, the writer lock and a full disk: finished work is
never lost."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from headstart.cache import CacheWriter, FeatureCache, verify_cache
from headstart import io as durable
from headstart.cache.schema import staging_dir
from headstart.cache.staging import StagingArea
from headstart.errors import CacheError
from tests.cache.synthetic import extract, make_spec, sha256_file

REPO = Path(__file__).resolve().parents[2]


def _load_all(path):
    with FeatureCache(path) as fc:
        return {name: fc.load(name) for name in fc.feature_sets}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name][0], b[name][0])
        np.testing.assert_array_equal(a[name][1], b[name][1])


def _parts(path):
    """The journaled batches of the extraction into `path` (one record per batch)."""
    return StagingArea(staging_dir(path), n_rows=32, manifest_hash="").batches()


def test_resume_after_crash_equals_uninterrupted(tmp_path, table):
    specs = [make_spec(table), make_spec(table, "vit", dim=5, dtype="float32")]
    extract(tmp_path / "ref.h5", table, specs, invalid={4})
    path = tmp_path / "c.h5"
    extract(path, table, specs, invalid={4}, stop_after=2)  # writer dropped without finish
    assert not path.exists() and len(_parts(path)) == 2
    with pytest.raises(CacheError, match="does not exist yet: an extraction into it is in progress or was interrupted"):
        FeatureCache(path)
    with CacheWriter(path, table, specs) as writer:
        assert writer.done_mask().sum() == 16
    writer = extract(path, table, specs, invalid={4}, batch=5)
    _assert_same(_load_all(path), _load_all(tmp_path / "ref.h5"))
    assert not staging_dir(path).exists() and verify_cache(path) == []


def _child_script(path: Path, kill_after: int) -> str:
    return textwrap.dedent(f"""
        import os, signal
        import numpy as np
        from headstart.cache import CacheWriter
        from tests.cache.synthetic import make_table, make_spec, features_for
        table = make_table()
        specs = [make_spec(table)]
        full = features_for(specs[0])
        with CacheWriter({str(path)!r}, table, specs) as w:
            todo = np.flatnonzero(~w.done_mask())
            for i, start in enumerate(range(0, len(todo), 4)):
                if i == {kill_after}:
                    os.kill(os.getpid(), signal.SIGKILL)
                rows = todo[start:start + 4]
                w.write_batch(rows, {{"resnet18": full[rows]}}, np.ones(len(rows), bool))
    """)


def test_sigkill_mid_loop_then_resume(tmp_path, table):
    spec = make_spec(table)
    extract(tmp_path / "ref.h5", table, [spec])
    path = tmp_path / "c.h5"
    for kill_after in (3, 5):  # killed twice; each rerun continues where the last stopped
        proc = subprocess.run([sys.executable, "-c", _child_script(path, kill_after)], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert len(_parts(path)) == 8  # 3 + 5 batches of 4 rows
    with CacheWriter(path, table, [spec]) as writer:  # the dead holder's lock is gone
        assert writer.done_mask().sum() == 32
    extract(path, table, [spec])
    _assert_same(_load_all(path), _load_all(tmp_path / "ref.h5"))


def test_torn_journal_record_is_redone(tmp_path, table):
    spec = make_spec(table)
    extract(tmp_path / "ref.h5", table, [spec])
    path = tmp_path / "c.h5"
    extract(path, table, [spec], stop_after=3)
    journal = staging_dir(path) / "rows.log"
    journal.write_bytes(journal.read_bytes()[:-50])  # the last record torn, as by a kill -9 mid-append
    with CacheWriter(path, table, [spec]) as writer:
        assert writer.done_mask().sum() == 16  # the two intact batches count
    extract(path, table, [spec])
    _assert_same(_load_all(path), _load_all(tmp_path / "ref.h5"))


def test_damaged_set_file_is_started_again(tmp_path, table):
    import h5py

    spec = make_spec(table)
    extract(tmp_path / "ref.h5", table, [spec])
    path = tmp_path / "c.h5"
    extract(path, table, [spec], stop_after=3)
    (file,) = staging_dir(path).glob("*.h5")
    with h5py.File(file, "r") as f:
        offset = f["features"].id.get_chunk_info(0).byte_offset
    data = bytearray(file.read_bytes())
    data[offset + 10] ^= 0xFF  # a flipped byte in a written chunk: its fletcher32 sum catches it
    file.write_bytes(bytes(data))
    with CacheWriter(path, table, [spec]) as writer:
        assert writer.done_mask().sum() == 0  # the rows of a damaged set file are extracted again
    extract(path, table, [spec])
    _assert_same(_load_all(path), _load_all(tmp_path / "ref.h5"))
    assert verify_cache(path) == []


def test_staged_extraction_with_other_fingerprint_refused(tmp_path, table):
    path = tmp_path / "c.h5"
    extract(path, table, [make_spec(table)], stop_after=1)
    other = make_spec(table, weights="file:mine.pt")
    with pytest.raises(CacheError, match="partial extraction of feature set 'resnet18'.*--overwrite"):
        CacheWriter(path, table, [other])
    assert len(_parts(path)) == 1
    extract(path, table, [other], overwrite=True)
    with FeatureCache(path) as fc:
        assert fc.feature_sets["resnet18"]["fingerprint"] == other.fingerprint


def test_second_writer_refused_with_holder(tmp_path, table):
    path = tmp_path / "c.h5"
    script = textwrap.dedent(f"""
        import sys
        from headstart.cache import CacheWriter
        from tests.cache.synthetic import make_table, make_spec
        table = make_table()
        with CacheWriter({str(path)!r}, table, [make_spec(table)]):
            print("locked", flush=True)
            sys.stdin.read()
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(CacheError, match=rf"is being written by pid {holder.pid} on host .* since .*wait"):
            with CacheWriter(path, table, [make_spec(table)]):
                pass
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    extract(path, table, [make_spec(table)])  # released: a new writer proceeds
    assert verify_cache(path) == []


def test_lock_released_on_exception_and_same_process_second_fd(tmp_path, table):
    path = tmp_path / "c.h5"
    spec = make_spec(table)
    with CacheWriter(path, table, [spec]):
        with pytest.raises(CacheError, match="being written by pid"):  # flock is per open file description
            CacheWriter(path, table, [spec]).__enter__()
    with pytest.raises(RuntimeError):
        with CacheWriter(path, table, [spec]):
            raise RuntimeError("boom")
    with CacheWriter(path, table, [spec]):
        pass


def _fail_with_enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_while_staging_is_resumable(tmp_path, table, monkeypatch):
    spec = make_spec(table)
    path = tmp_path / "c.h5"
    extract(path, table, [make_spec(table, "vit", dim=4)])
    digest = sha256_file(path)
    with CacheWriter(path, table, [spec]) as writer:
        full = np.ones((len(table), spec.dim), np.float32)
        writer.write_batch(np.arange(8), {"resnet18": full[:8]}, np.ones(8, bool))
        monkeypatch.setattr(StagingArea, "append", _fail_with_enospc)
        with pytest.raises(CacheError, match=r"^disk full while writing .*rerun the same command to resume$"):
            writer.write_batch(np.arange(8, 16), {"resnet18": full[8:16]}, np.ones(8, bool))
    monkeypatch.undo()
    assert sha256_file(path) == digest
    with CacheWriter(path, table, [spec]) as writer:
        assert writer.done_mask().sum() == 8


def test_disk_full_while_publishing_keeps_old_file(tmp_path, table, monkeypatch):
    spec = make_spec(table)
    path = tmp_path / "c.h5"
    extract(path, table, [make_spec(table, "vit", dim=4)])
    digest = sha256_file(path)
    import headstart.cache.publish as publish_module

    real_add = publish_module._add

    def add_fails_half_way(dst, *args, **kwargs):  # the set is copied into the file, then the disk fills up
        real_add(dst, *args, **kwargs)
        _fail_with_enospc()

    monkeypatch.setattr(publish_module, "_add", add_fails_half_way)
    with pytest.raises(CacheError, match="disk full while writing"):
        extract(path, table, [spec])
    monkeypatch.undo()
    assert sha256_file(path) == digest
    assert not list(tmp_path.glob(".c.h5.tmp-*"))  # the half-built file is removed
    with CacheWriter(path, table, [spec]) as writer:
        assert writer.done_mask().all()  # every batch is still staged
    extract(path, table, [spec])
    assert sorted(_load_all(path)) == ["resnet18", "vit"]


def test_reader_sees_old_content_while_writer_stages(tmp_path, table):
    path = tmp_path / "c.h5"
    extract(path, table, [make_spec(table, "vit", dim=4)])
    before = _load_all(path)
    spec = make_spec(table)
    with CacheWriter(path, table, [spec]) as writer:
        writer.write_batch(np.arange(8), {"resnet18": np.ones((8, 8))}, np.ones(8, bool))
        with FeatureCache(path) as fc:  # opened mid-extraction
            assert list(fc.feature_sets) == ["vit"]
            assert fc.info()["staged"]["rows_staged"] == 8
            with pytest.raises(CacheError, match="'resnet18' is not in .*available: vit"):
                fc.load("resnet18")
            reader = FeatureCache(path)  # stays open across the publish
        rest = np.arange(8, len(table))
        writer.write_batch(rest, {"resnet18": np.ones((len(rest), 8))}, np.ones(len(rest), bool))
        writer.finish(stats={}, skipped=[])
    _assert_same({"vit": reader.load("vit")}, before)
    assert "resnet18" not in reader.feature_sets
    reader.close()
    assert sorted(_load_all(path)) == ["resnet18", "vit"]
