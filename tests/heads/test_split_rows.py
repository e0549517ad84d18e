"""The runner's in-place split (train compacted into the loaded matrix) equals plain fancy indexing."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from headstart.heads import runner


def test_split_rows_equals_fancy_indexing_and_reuses_the_loaded_matrix(monkeypatch):
    monkeypatch.setattr(runner, "COMPACT_ROWS", 7)  # many blocks, so a block that overwrote unread rows would show
    rng = np.random.default_rng(0)
    n, d = 503, 5
    X = rng.normal(size=(n, d)).astype(np.float32)
    original = X.copy()
    splits = rng.choice(np.array(["train", "val", "test"]), size=n, p=[0.7, 0.1, 0.2])
    splits[-40:] = "train"  # train rows up to the last row: the final block ends at the matrix's end
    valid = rng.random(n) > 0.05
    cache = SimpleNamespace(splits=splits, labels=rng.integers(0, 2, n), ids=np.array([f"i{k}" for k in range(n)]),
                            groups=np.array([f"g{k % 50}" for k in range(n)]))
    rows = runner._split_rows(cache, X, valid)
    for split in ("train", "val", "test"):
        keep = (splits == split) & valid
        np.testing.assert_array_equal(rows[split].X, original[keep])
        np.testing.assert_array_equal(rows[split].y, cache.labels[keep])
        np.testing.assert_array_equal(rows[split].ids, cache.ids[keep])
        np.testing.assert_array_equal(rows[split].groups, cache.groups[keep])
    assert np.shares_memory(rows["train"].X, X)  # no second copy of the matrix for train
