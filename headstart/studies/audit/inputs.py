"""Everything the audit checks read from a cache, gathered once into plain arrays."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headstart.cache.header import MetaTable, read_cache_meta
from headstart.cache.reader import FeatureCache
from headstart.data.label_policy import evaluation_targets

log = logging.getLogger(__name__)


@dataclass
class AuditInputs:
    """The sample table, the metadata columns and (optionally) one feature set of a cache."""

    path: str
    ids: np.ndarray  # (N,) str
    labels: np.ndarray  # (N,) int class indices
    splits: np.ndarray  # (N,) "train" | "val" | "test"
    groups: np.ndarray  # (N,) patient id, "" when unknown
    classes: list[str]
    root_attrs: dict  # the cache's root attributes (source, split_config, duplicates, ...)
    meta: MetaTable
    feature_set: str | None = None  # name of the loaded feature set; None when the cache has no complete one
    features: np.ndarray | None = None  # (N, D) float32
    valid: np.ndarray | None = None  # (N,) bool: False where the image was skipped at extraction
    feature_note: str = ""  # why `features` is None
    task: str = "binary"  # binary | multiclass | multilabel (then `classes` are the findings, `labels` all 0)
    truth: np.ndarray | None = None  # multilabel: (N, L) 0/1 as evaluation reads it (blank = negative)
    known: np.ndarray | None = None  # multilabel: (N, L) bool, False where uncertain (never scored)

    @property
    def n(self) -> int:
        return len(self.ids)

    def rows(self, split: str) -> np.ndarray:
        """Indices of `split` whose features are usable."""
        mask = self.splits == split
        if self.valid is not None:
            mask &= self.valid
        return np.flatnonzero(mask)


def load_inputs(path: str | Path, *, feature_set: str | None = None) -> AuditInputs:
    """Read a cache for the audit. `feature_set` None picks the first complete set; a named set that is missing or
    incomplete raises CacheError (the user asked for it); a cache with no complete set audits without features."""
    with FeatureCache(path) as cache:
        inputs = AuditInputs(path=str(path), ids=cache.ids, labels=cache.labels, splits=cache.splits,
                             groups=cache.groups, classes=list(cache.classes), root_attrs=dict(cache.root_attrs),
                             meta=MetaTable(), task=cache.task)
        if cache.task == "multilabel":  # scored as evaluation scores: uncertain never, a blank as a negative
            inputs.truth, inputs.known = evaluation_targets(cache.label_matrix, "negative", inputs.classes)
            inputs.labels = np.zeros(cache.n_samples, dtype=np.int64)
        complete = [name for name, m in cache.feature_sets.items() if m["complete"]]
        name = feature_set or (complete[0] if complete else None)
        if name is None:
            inputs.feature_note = "the cache has no complete feature set (run `headstart extract` to add one)"
        else:
            inputs.features, inputs.valid = cache.load(name)
            inputs.feature_set = name
            if feature_set is None and len(complete) > 1:
                log.info("auditing feature set %s (of %s); choose another with -b", name, ", ".join(complete))
    inputs.meta = read_cache_meta(path, inputs.n)
    return inputs
