"""Readers during an extraction, and two extractions into one file at once.

A `python -m headstart extract` subprocess adds a second feature set to a cache while this process reads it
with `cache info --json` and `heads` in a loop. Every read must see a consistent file whose listed sets are all
complete (the old content, or the new content once it is published), or refuse in one line; the writer must
finish unharmed. A second extraction started meanwhile is refused by the lock and names the holder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from headstart.cache.reader import FeatureCache
from headstart.cache.schema import staging_dir
from headstart.errors import CacheError
from tests.reliability.conftest import (EXTRACT_OPTS, REPO, TALLY, assert_one_line_error, cli_env, features,
                                        headstart_cmd, invoke)


@pytest.mark.slow
def test_readers_and_second_writer_during_extraction(small_data, reference_cache, tmp_path):
    path = tmp_path / "c.h5"
    shutil.copyfile(reference_cache, path)
    before = features(path)["resnet18"]
    # Batches of one image: 32 staged parts keep the writer holding the lock for a few seconds (with torch:
    # onnxruntime runs one-image batches too fast for that).
    writer = subprocess.Popen(headstart_cmd("extract", str(small_data), "-o", str(path), "-b", "efficientnet_b0",
                                            *EXTRACT_OPTS, "--batch-size", "1", "--engine", "torch"), cwd=REPO, env=cli_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    seen: set[tuple[str, ...]] = set()
    second_tried = False
    heads_runs = 0
    try:
        deadline = time.monotonic() + 300
        while writer.poll() is None and time.monotonic() < deadline:
            info = invoke("cache", "info", "--json", str(path))
            if info.exit_code == 0:
                summary = json.loads(info.output)
                assert all(s["complete"] for s in summary["feature_sets"]), summary["feature_sets"]
                names = tuple(sorted(s["name"] for s in summary["feature_sets"]))
                assert names in (("resnet18",), ("efficientnet_b0", "resnet18")), names
                seen.add(names)
                TALLY["concurrent cache info"]["complete sets only"] += 1
            else:
                assert_one_line_error(info)
                TALLY["concurrent cache info"]["refused-with-one-line"] += 1
            if not second_tried and staging_dir(path).is_dir() and writer.poll() is None:
                second_tried = True
                second = invoke("extract", str(small_data), "-o", str(path), "-b", "efficientnet_b0", *EXTRACT_OPTS)
                assert second.exit_code == 1, f"the writer finished before the second extraction: {second.output}"
                line = assert_one_line_error(second)
                assert f"being written by pid {writer.pid} on host {socket.gethostname()}" in line, line
                TALLY["second writer"]["refused by the lock, names pid and host"] += 1
            if heads_runs < 1 and writer.poll() is None:
                runs = tmp_path / f"runs{heads_runs}"
                heads = invoke("heads", str(path), "-o", str(runs), "-b", "resnet18", "--head", "logreg",
                               "--sweep", "quick", "--n-boot", "20")
                assert heads.exit_code == 0, heads.output
                heads_runs += 1
                TALLY["concurrent heads"]["read complete set"] += 1
            time.sleep(0.2)
        out, err = writer.communicate(timeout=300)
    finally:
        if writer.poll() is None:
            writer.send_signal(signal.SIGKILL)
            writer.wait()
    assert writer.returncode == 0, err
    assert "Traceback" not in err
    assert second_tried, "the writer finished before a second extraction could be tried"
    assert ("resnet18",) in seen
    assert invoke("cache", "verify", str(path)).exit_code == 0
    after = features(path)
    assert sorted(after) == ["efficientnet_b0", "resnet18"]
    assert after["resnet18"][0].tobytes() == before[0].tobytes()  # the old set is carried over unchanged


def test_reader_and_second_writer_during_extraction_in_threads(small_data, reference_cache, tmp_path):
    """The fast variant: the writer is `run_extract` in a thread of this process (a separate lock fd)."""
    from headstart.data.types import SplitConfig
    from headstart.extract.config import ExtractConfig
    from headstart.extract.runner import run_extract

    path = tmp_path / "c.h5"
    shutil.copyfile(reference_cache, path)
    # The torch engine: onnxruntime runs these 32 one-image batches so fast that the run can end before a second
    # extraction reaches the lock.
    config = ExtractConfig(backbones=["efficientnet_b0"], weights="random", image_size=32, batch_size=1, workers=0,
                           engine="torch", split=SplitConfig())
    failure: list[BaseException] = []

    def extract() -> None:
        try:
            run_extract(data=str(small_data), output=str(path), config=config)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failure.append(exc)

    thread = threading.Thread(target=extract)
    thread.start()
    second_tried = False
    reads = 0
    try:
        while thread.is_alive():
            try:
                with FeatureCache(path) as cache:
                    sets = cache.info()["feature_sets"]
            except CacheError as exc:  # only while the new set is being added in place (the undo journal exists)
                assert "is being changed by an extraction" in str(exc) and "\n" not in str(exc), exc
                TALLY["concurrent reads (thread writer)"]["refused in one line during the in-place add"] += 1
                time.sleep(0.05)
                continue
            names = sorted(s["name"] for s in sets)
            assert all(s["complete"] for s in sets) and names in (["resnet18"], ["efficientnet_b0", "resnet18"]), sets
            reads += 1
            if not second_tried and staging_dir(path).is_dir() and thread.is_alive():
                second_tried = True
                second = invoke("extract", str(small_data), "-o", str(path), "-b", "efficientnet_b0", *EXTRACT_OPTS)
                assert second.exit_code == 1, f"the writer finished before the second extraction: {second.output}"
                line = assert_one_line_error(second)
                assert f"being written by pid {os.getpid()} on host {socket.gethostname()}" in line, line
            time.sleep(0.05)
    finally:
        thread.join()
    assert not failure, failure
    assert second_tried and reads > 1
    TALLY["concurrent reads (thread writer)"]["complete sets only"] += reads
    assert invoke("cache", "verify", str(path)).exit_code == 0
    assert sorted(features(path)) == ["efficientnet_b0", "resnet18"]
