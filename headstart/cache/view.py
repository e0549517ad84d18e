"""`open_cache(path)`: a cache as a read-only notebook object, with each split of a feature set as arrays.

Built on `FeatureCache` (the checking reader), but no HDF5 handle stays open between calls: each call opens, reads
and closes the file, so a later plain `h5py.File(path, "r")` in the same process does not fail ("file locking flag
values don't match").

`dataset_with_cache_splits` is the other way round: DATA in the splits a cache recorded, so that `finetune
--splits-from CACHE` trains on exactly the cache's splits (DATA must hold the images, labels and classes the cache
was extracted from).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from headstart.cache.reader import FeatureCache
from headstart.data.options import SourceOptions
from headstart.data.sources import load_source
from headstart.data.types import SPLITS, Dataset
from headstart.errors import CacheError, CacheMismatchError, ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureSet:
    """One feature set's description; `attrs` holds every attribute stored on `/features/<name>`."""

    name: str  # the key for `Cache.arrays`
    backbone: str | None  # what computed the features (a registry name, or a label for external features)
    weights: str | None  # weight tag, e.g. "imagenet:ResNet18_Weights.IMAGENET1K_V1", "random", "external"
    dim: int  # feature dimension D
    dtype: str  # storage dtype; `arrays` always returns float32
    complete: bool  # False while an extraction into it has not finished; such a set cannot be read
    n_skipped: int = 0  # rows whose image failed extraction; `arrays` drops them
    attrs: dict = field(default_factory=dict, repr=False)


class Cache:
    """A headstart feature cache, read-only (`headstart.open_cache(path)`); also a context manager.

    `classes`, `splits` (rows per split), `feature_sets` and `samples` are the header read on opening;
    `arrays(name, split)` reads features. Closing drops the last feature set kept in memory.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._closed = False
        self._memo: tuple[tuple, np.ndarray, np.ndarray] | None = None  # (key, X, valid) of the last set read
        with FeatureCache(self.path) as reader:  # raises the reader's one-line CacheError for a bad path
            self._take_header(reader)

    def _take_header(self, reader: FeatureCache) -> None:
        self.classes: list[str] = list(reader.classes)
        self.feature_sets: dict[str, FeatureSet] = {
            name: FeatureSet(name=name, backbone=meta.get("backbone"), weights=meta.get("weights"), dim=meta["dim"],
                             dtype=meta["dtype"], complete=meta["complete"],
                             n_skipped=int(meta.get("n_skipped", 0) or 0), attrs=dict(meta))
            for name, meta in reader.feature_sets.items()}
        self.samples: dict[str, np.ndarray] = {"id": reader.ids, "label": reader.labels, "split": reader.splits,
                                               "group": reader.groups}

    @property
    def n_samples(self) -> int:
        return len(self.samples["id"])

    @property
    def splits(self) -> dict[str, int]:
        """Rows per split, in train, val, test order (splits without rows are left out)."""
        counts = {s: int((self.samples["split"] == s).sum()) for s in SPLITS}
        return {s: n for s, n in counts.items() if n}

    def info(self) -> dict:
        """The JSON-able summary `headstart cache info --json` prints."""
        self._check_open()
        with FeatureCache(self.path) as reader:
            self._take_header(reader)
            return reader.info()

    def arrays(self, name: str, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`(X, y, ids)` of one split of feature set `name`: float32 (n, D), int64 class indices into `classes`,
        and the sample ids. Rows whose image failed extraction (`/valid/<name>` False) are dropped, with a warning
        that says how many."""
        self._check_open()
        if split not in SPLITS:
            raise ConfigError(f"split {split!r} is unknown; expected one of {', '.join(SPLITS)}")
        X, valid = self._load(name)
        in_split = self.samples["split"] == split
        keep = in_split & valid
        dropped = int(in_split.sum() - keep.sum())
        if dropped:
            logger.warning("%s: dropped %d of %d %s rows of '%s' whose images failed extraction (valid=False)",
                           self.path, dropped, int(in_split.sum()), split, name)
        return X[keep], self.samples["label"][keep], self.samples["id"][keep]  # boolean indexing copies

    def _load(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The whole set and its valid mask; the last set read is kept until the file changes or `close`."""
        key = (name, _identity(self.path))
        if self._memo is not None and self._memo[0] == key:
            return self._memo[1], self._memo[2]
        with FeatureCache(self.path) as reader:
            self._take_header(reader)  # the file may have been replaced (re-split, new sets) since opening
            X, valid = reader.load(name)
        self._memo = (key, X, valid)
        return X, valid

    def close(self) -> None:
        self._memo = None
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise CacheError(f"{self.path} was closed; open it again with headstart.open_cache({str(self.path)!r})")

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        sets = ", ".join(f"{n} ({s.dim}-d{'' if s.complete else ', incomplete'})" for n, s in self.feature_sets.items())
        splits = ", ".join(f"{s} {n}" for s, n in self.splits.items())
        return f"Cache({str(self.path)!r}: {self.n_samples} samples [{splits}], classes {self.classes}, sets: {sets or 'none'})"


def open_cache(path: str | Path) -> Cache:
    """Open a headstart cache read-only: `.classes`, `.splits`, `.feature_sets`, `.arrays(name, split)`.
    Raises CacheError, in one line, when the path is missing, is not a headstart cache or is damaged."""
    return Cache(path)


def _identity(path: Path) -> tuple:
    """Changes whenever the file is replaced (writers rename a new file over the cache) or rewritten."""
    try:
        st = os.stat(path)
    except OSError:
        return ()
    return (st.st_ino, st.st_size, st.st_mtime_ns)


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
