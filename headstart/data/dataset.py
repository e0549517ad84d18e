"""DATA argument -> split, de-duplicated data set: the one entry point extract and finetune call."""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter

from headstart.data.duplicates import find_cross_split_duplicates
from headstart.data.sources import load_source
from headstart.data.splits import assign_splits
from headstart.data.types import SPLITS, Dataset, Sample, SplitConfig

log = logging.getLogger(__name__)


def build_dataset(data: str | os.PathLike, *, split_config: SplitConfig, find_duplicates: bool = True) -> Dataset:
    """Detect and list the source, assign splits, and look for exact duplicates across splits.

    The duplicate check reads and hashes every file; callers that do not record it (fine-tuning, torchrun ranks
    other than 0) pass `find_duplicates=False` rather than read the whole data set again.
    """
    source = load_source(data, group_pattern=split_config.group_pattern)
    samples = assign_splits(source.samples, split_config, classes=source.classes)
    duplicates = find_cross_split_duplicates(samples, source) if find_duplicates else {}
    log.info("%s (%s): %s", source.root, source.kind, split_summary(samples, source.classes))
    return Dataset(source=source, samples=samples, classes=source.classes, duplicates=duplicates)


def split_summary(samples: list[Sample], classes: list[str]) -> str:
    """One line such as `train 4172 (NORMAL 1073, PNEUMONIA 3099) | val 492 (...) | test 624 (...)`."""
    counts = Counter((s.split, s.label) for s in samples)
    parts = []
    for split in SPLITS:
        total = sum(n for (sp, _), n in counts.items() if sp == split)
        per_class = ", ".join(f"{name} {counts[(split, i)]}" for i, name in enumerate(classes))
        parts.append(f"{split} {total} ({per_class})")
    return " | ".join(parts)


def manifest_hash(samples: list[Sample], classes: list[str]) -> str:
    """sha256 over the class list and one `id\\tlabel\\tsplit\\tgroup` line per sample, in the given order.

    It is part of the cache fingerprint: the cache stores one row per sample in this order, so a different
    file list, relabelling or re-split (another seed or fraction) gives a different hash and is not silently
    mixed with features extracted for the old one.
    """
    h = hashlib.sha256()
    h.update(("classes\t" + "\t".join(classes) + "\n").encode())
    for s in samples:
        h.update(f"{s.id}\t{s.label}\t{s.split}\t{s.group}\n".encode())
    return h.hexdigest()
