"""WriteBehind: batches are staged off the loop, in order, and nothing is lost or reordered by a failure."""

from __future__ import annotations

import time

import numpy as np
import pytest

from headstart.cache import CacheWriter, FeatureCache
from headstart.cache.stager import Stager, WriteBehind
from headstart.errors import CacheError
from tests.cache.synthetic import features_for, make_spec, stats_for


def _batches(table, spec, size=8):
    full = features_for(spec, len(table))
    for start in range(0, len(table), size):
        rows = np.arange(start, min(len(table), start + size))
        yield rows, {spec.name: full[rows]}, np.ones(len(rows), bool)


def test_every_batch_is_staged_and_published(tmp_path, table):
    spec = make_spec(table)
    path = tmp_path / "c.h5"
    with CacheWriter(path, table, [spec]) as writer:
        with WriteBehind(writer.stager) as staged:
            for batch in _batches(table, spec):
                staged.write_batch(*batch)
        assert writer.done_mask().all()  # leaving the block waited for the last batch
        journaled = [int(b.rows[0]) for b in writer.stager.staging.batches()]
        assert journaled == list(range(0, len(table), 8))  # one record per batch, in order
        writer.finish(stats=stats_for([spec]), skipped=[])
    with FeatureCache(path) as fc:
        x, _ = fc.load(spec.name)
    np.testing.assert_array_equal(x, features_for(spec, len(table)).astype(np.float16).astype(np.float32))


def test_a_failed_batch_stops_the_next_one(tmp_path, table, monkeypatch):
    spec = make_spec(table)
    real = Stager.write_batch
    calls = []

    def second_fails(self, rows, features, valid, meta=None):
        calls.append(int(rows[0]))
        if len(calls) == 2:
            raise CacheError("disk full while writing the second batch")
        real(self, rows, features, valid, meta=meta)

    monkeypatch.setattr(Stager, "write_batch", second_fails)
    batches = list(_batches(table, spec))
    with CacheWriter(tmp_path / "c.h5", table, [spec]) as writer:
        staged = WriteBehind(writer.stager)
        with pytest.raises(CacheError, match="second batch"):
            with staged:
                for batch in batches:
                    staged.write_batch(*batch)
        assert calls == [0, 8]  # the third batch was never handed over
        assert int(writer.done_mask().sum()) == 8


def test_leaving_on_an_error_keeps_the_batch_in_flight(tmp_path, table, monkeypatch):
    spec = make_spec(table)
    real = Stager.write_batch

    def slow(self, *args, **kwargs):
        time.sleep(0.3)  # still being staged when the loop is interrupted
        real(self, *args, **kwargs)

    monkeypatch.setattr(Stager, "write_batch", slow)
    with CacheWriter(tmp_path / "c.h5", table, [spec]) as writer:
        with pytest.raises(KeyboardInterrupt):
            with WriteBehind(writer.stager) as staged:
                staged.write_batch(*next(_batches(table, spec)))
                raise KeyboardInterrupt  # the loop is interrupted while the batch is still being staged
        assert int(writer.done_mask().sum()) == 8
