"""The distributed helpers in a single process, the request check, and ranks staging beside the writer (no torchrun)."""

from __future__ import annotations

import numpy as np
import pytest

from headstart import distributed
from headstart.cache import CacheRequest, CacheWriter, FeatureCache, Stager
from headstart.cache.schema import staging_dir
from headstart.errors import CacheMismatchError, ConfigError, DataError
from tests.cache.synthetic import features_for, make_spec, make_table, stats_for


def test_single_process_helpers_are_no_ops(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    job = distributed.init_distributed()
    assert job == distributed.DistInfo(rank=0, world_size=1, local_rank=0)
    assert job.is_main and not job.distributed
    assert distributed.init_distributed() == job  # idempotent
    assert distributed.is_main()
    assert distributed.all_gather_object({"a": 1}) == [{"a": 1}]
    assert distributed.broadcast_object([3]) == [3]
    distributed.barrier()
    distributed.cleanup()
    with pytest.raises(DataError, match="bad"), distributed.same_outcome():
        raise DataError("bad")


def test_env_layout_is_checked(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ConfigError, match="RANK=2 WORLD_SIZE=2 is inconsistent"):
        distributed.env_info()
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(ConfigError, match="RANK='one' is not an integer"):
        distributed.env_info()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.env_info() == distributed.DistInfo(rank=1, world_size=2, local_rank=1)
    assert distributed.env_info().distributed and not distributed.env_info().is_main


def test_mismatched_ranks_names_the_rank_and_the_arguments():
    same = {"batch_size": 8, "backbones": ["resnet18"], "data": "d"}
    assert distributed.mismatched_ranks([same, dict(same), dict(same)]) is None
    message = distributed.mismatched_ranks([same, dict(same), {**same, "batch_size": 16}])
    assert message == ("rank 2 was started with different arguments (batch_size: 16 vs rank 0's 8); "
                       "start every rank with the same command")
    many = distributed.mismatched_ranks([same, {"batch_size": 1, "backbones": [], "data": "e", "x": 1}])
    assert message and many.startswith("rank 1 was started with different arguments (") and "; ...)" in many
    assert "\n" not in many


def test_ranks_stage_into_one_folder_and_the_writer_publishes_all(tmp_path):
    """Three 'ranks' in one process: rank 0 prepares and publishes, stagers add disjoint rows without the lock."""
    table = make_table()
    specs = [make_spec(table)]
    full = features_for(specs[0], len(table))
    path = tmp_path / "c.h5"
    writer = CacheWriter(path, table, specs, rank=0)
    request = CacheRequest.of(path, table, specs)
    with writer:
        rows = np.flatnonzero(~writer.done_mask())
        shards = np.array_split(rows, 3)
        stagers = [Stager.joined(request, writer.todo, rank=r) for r in (1, 2)]  # they join the area rank 0 prepared
        for stager, shard in zip([writer.stager, *stagers], shards):
            for start in range(0, len(shard), 5):
                batch = shard[start:start + 5]
                stager.write_batch(batch, {"resnet18": full[batch]}, np.ones(len(batch), dtype=bool))
        journals = sorted(p.name for p in staging_dir(path).glob("rows*.log"))
        assert journals == ["rows-r1.log", "rows-r2.log", "rows.log"]  # one journal and one set file per rank
        assert len(list(staging_dir(path).glob("*-r[12].h5"))) == 2
        assert len(writer.stager.staging.batches()) == sum(-(-len(s) // 5) for s in shards)
        assert not hasattr(stagers[0], "finish")  # only the writer (rank 0, holding the lock) publishes
        assert not writer.done_mask().all()  # the writer has not looked at the others' parts yet
        writer.rescan()
        assert writer.done_mask().all()
        writer.finish(stats=stats_for(specs), skipped=[])
    with FeatureCache(path) as cache:
        features, valid = cache.load("resnet18")
    np.testing.assert_array_equal(features, full.astype(np.float16))
    assert valid.all() and not staging_dir(path).exists()


def test_stager_refuses_a_staging_area_made_for_another_request(tmp_path):
    table = make_table()
    path = tmp_path / "c.h5"
    other = CacheRequest.of(path, table, [make_spec(table, dim=4)])
    with CacheWriter(path, table, [make_spec(table)], rank=0):
        with pytest.raises(CacheMismatchError, match="was not prepared for this request by the writer"):
            Stager.joined(other, ["resnet18"], rank=1)
    with pytest.raises(CacheMismatchError, match="was not prepared for this request by the writer"):
        Stager.joined(CacheRequest.of(tmp_path / "d.h5", table, [make_spec(table)]), ["resnet18"], rank=1)  # no area
