from __future__ import annotations

import pytest

from tests.studies.audit.caches import drop_meta, extract, shortcut_dataset


@pytest.fixture(scope="session")
def planted(tmp_path_factory):
    """(cache with metadata, cache without metadata, data folder, planted (orig id, copy id) pairs)."""
    root = tmp_path_factory.mktemp("audit")
    data, pairs = shortcut_dataset(root / "data")
    with_meta = extract(data, root / "meta.h5")  # extract records /samples/meta
    old = root / "old.h5"
    old.write_bytes(with_meta.read_bytes())
    drop_meta(old)  # the same cache as made before metadata existed
    return with_meta, old, data, pairs
