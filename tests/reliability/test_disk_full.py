"""A full disk during an extraction: one clear line, the existing cache intact, staged work kept, rerun completes.

ENOSPC is injected at the cache's write layer: once while batches are being journaled (`StagingArea.append`) and
once while the finished set is being added to the file in place (`publish._add`, rolled back by the undo journal),
or, for a new file, renamed into place (`headstart.io`). A real
size-limited location is used too when one is mounted (none can be made here without root).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

import pytest

from headstart import io as durable
import headstart.cache.publish as publish_module
from headstart.cache.schema import journal_path, staging_dir
from headstart.cache.staging import StagingArea
from tests.reliability.conftest import (EXTRACT_OPTS, TALLY, assert_one_line_error, assert_same_features, features,
                                        invoke)

SECOND_SET = ["-b", "efficientnet_b0"]  # added to a cache that already holds resnet18


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _journaled(path: Path) -> int:
    return len(StagingArea(staging_dir(path), n_rows=1 << 40, manifest_hash="").batches())


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def cache_with_one_set(reference_cache, tmp_path) -> Path:
    path = tmp_path / "c.h5"
    shutil.copyfile(reference_cache, path)
    return path


def test_disk_full_while_staging(small_data, cache_with_one_set, reference_cache, monkeypatch):
    path = cache_with_one_set
    before = _sha(path)
    real_append = StagingArea.append
    written = []

    def fill_up_after_three_batches(self, *args, **kwargs):
        if len(written) >= 3:
            _enospc()
        written.append(args)
        real_append(self, *args, **kwargs)

    monkeypatch.setattr(StagingArea, "append", fill_up_after_three_batches)
    result = invoke("extract", str(small_data), "-o", str(path), *SECOND_SET, *EXTRACT_OPTS)
    line = assert_one_line_error(result)
    assert "disk full" in line and "rerun the same command to resume" in line
    assert _sha(path) == before  # the published file is untouched
    assert _journaled(path) == 3  # finished batches are kept
    monkeypatch.undo()

    rerun = invoke("extract", str(small_data), "-o", str(path), *SECOND_SET, *EXTRACT_OPTS)
    assert rerun.exit_code == 0, rerun.output
    assert "for 20 images" in rerun.output  # 32 images, 3 batches of 4 already staged: only the rest is redone
    assert invoke("cache", "verify", str(path)).exit_code == 0
    assert features(path)["resnet18"][0].tobytes() == features(reference_cache)["resnet18"][0].tobytes()
    TALLY["disk full"]["while staging: one line, file intact, resumed"] += 1


def test_disk_full_while_publishing(small_data, cache_with_one_set, reference_cache, monkeypatch):
    path = cache_with_one_set
    before = _sha(path)
    real_add = publish_module._add

    def full_half_way_through_the_add(dst, *args, **kwargs):  # the set is in the file when the disk fills up
        real_add(dst, *args, **kwargs)
        _enospc()

    monkeypatch.setattr(publish_module, "_add", full_half_way_through_the_add)
    result = invoke("extract", str(small_data), "-o", str(path), *SECOND_SET, *EXTRACT_OPTS)
    line = assert_one_line_error(result)
    assert "disk full" in line and str(path) in line
    assert _sha(path) == before  # rolled back byte for byte
    assert not list(path.parent.glob(f".{path.name}*.tmp-*")) and not journal_path(path).exists()
    assert _journaled(path) == 8  # every batch is still staged
    monkeypatch.undo()

    rerun = invoke("extract", str(small_data), "-o", str(path), *SECOND_SET, *EXTRACT_OPTS)
    assert rerun.exit_code == 0, rerun.output
    assert "extracted efficientnet_b0 for 0 images" in rerun.output  # nothing recomputed, only published
    assert invoke("cache", "verify", str(path)).exit_code == 0
    assert sorted(features(path)) == ["efficientnet_b0", "resnet18"]
    TALLY["disk full"]["while publishing: one line, file intact, resumed"] += 1


def test_disk_full_on_first_extraction_leaves_no_file(small_data, reference_cache, tmp_path, monkeypatch):
    path = tmp_path / "new.h5"
    real_replace = durable.replace_durably
    monkeypatch.setattr(durable, "replace_durably",
                        lambda src, dst: _enospc() if Path(dst) == path else real_replace(src, dst))
    assert "disk full" in assert_one_line_error(invoke("extract", str(small_data), "-o", str(path), *EXTRACT_OPTS))
    assert not path.exists()
    monkeypatch.undo()
    assert invoke("extract", str(small_data), "-o", str(path), *EXTRACT_OPTS).exit_code == 0
    assert_same_features(path, reference_cache)
    TALLY["disk full"]["first extraction: no file, resumed"] += 1


def _small_mount() -> Path | None:
    """A writable, nearly full file system already mounted (e.g. a tiny tmpfs set up by CI); None here."""
    candidate = os.environ.get("HEADSTART_SMALL_FS")
    if candidate and Path(candidate).is_dir() and os.access(candidate, os.W_OK):
        return Path(candidate)
    return None


def test_real_size_limited_location(small_data):
    mount = _small_mount()
    if mount is None:
        pytest.skip("no size-limited file system (set HEADSTART_SMALL_FS to a small writable mount, e.g. a 1 MiB "
                    "tmpfs)")
    path = mount / "c.h5"
    result = invoke("extract", str(small_data), "-o", str(path), *EXTRACT_OPTS, "-b", "densenet121")
    if result.exit_code != 0:
        assert "disk full" in assert_one_line_error(result)
        assert not path.exists()
