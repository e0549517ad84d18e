"""DATA in the splits a cache recorded: how `finetune --splits-from CACHE` trains on exactly the cache's splits.

The cache stores one row per image with its split, so a fine-tune can reuse them instead of deriving its own;
the images, labels and classes of DATA must be the ones the cache was extracted from.
"""

from __future__ import annotations

import os
from dataclasses import replace

from headstart.cache.reader import FeatureCache
from headstart.data.options import SourceOptions
from headstart.data.sources import load_source
from headstart.data.types import Dataset
from headstart.errors import CacheMismatchError


def dataset_with_cache_splits(data: str | os.PathLike, cache_path: str | os.PathLike, *,
                              group_pattern: str | None = None, options: SourceOptions | None = None) -> Dataset:
    """The samples of DATA, in the cache's row order and with the cache's splits; refused when DATA holds other
    images, labels or classes than the cache."""
    with FeatureCache(cache_path) as cache:
        ids, splits, labels, classes = list(cache.ids), list(cache.splits), cache.labels.tolist(), cache.classes
        if cache.label_matrix is not None:  # multi-label: compare the raw codes, row by row
            labels = [tuple(int(c) for c in row) for row in cache.label_matrix]
    source = load_source(data, group_pattern=group_pattern, options=options)
    by_id = {s.id: s for s in source.samples}
    missing = [i for i in ids if i not in by_id]
    extra = len(by_id) - (len(ids) - len(missing))
    if missing or extra:
        example = f" (e.g. {missing[0]!r})" if missing else ""
        raise CacheMismatchError(
            f"--splits-from {cache_path}: {len(missing)} cache ids are not in {data}{example} and {extra} images of "
            f"{data} are not in the cache; pass the DATA the cache was extracted from"
        )
    relabelled = [i for i, label in zip(ids, labels)
                  if (by_id[i].labels if isinstance(label, tuple) else by_id[i].label) != label]
    if list(classes) != list(source.classes) or relabelled:
        raise CacheMismatchError(f"--splits-from {cache_path}: the cache's classes {list(classes)} or labels "
                                 f"({len(relabelled)} differ) do not match {data} (classes {source.classes}); "
                                 "pass the DATA the cache was extracted from")
    samples = [replace(by_id[i], split=str(split)) for i, split in zip(ids, splits)]
    return Dataset(source=source, samples=samples, classes=source.classes)
