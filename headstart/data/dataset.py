"""DATA argument -> split, de-duplicated data set: the one entry point extract and finetune call."""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter

import numpy as np

from headstart.data.duplicates import find_cross_split_duplicates
from headstart.data.labelcodes import BLANK, NEGATIVE, POSITIVE
from headstart.data.options import SourceOptions
from headstart.data.sources import load_source
from headstart.data.splits import assign_splits
from headstart.data.types import SPLITS, Dataset, Sample, SplitConfig

log = logging.getLogger(__name__)


def build_dataset(data: str | os.PathLike, *, split_config: SplitConfig, find_duplicates: bool = True,
                  source_options: SourceOptions | None = None, warn_rare: bool = True) -> Dataset:
    """Detect and list the source, assign splits, and look for exact duplicates across splits.

    The duplicate check reads and hashes every file; callers that do not record it (fine-tuning, torchrun ranks
    other than 0) pass `find_duplicates=False` rather than read the whole data set again. `warn_rare=False` leaves
    the rare-finding warning to a caller that warns under its own label policy (fine-tuning).
    """
    source = load_source(data, group_pattern=split_config.group_pattern, options=source_options)
    samples = assign_splits(source.samples, split_config, classes=source.classes)
    duplicates = find_cross_split_duplicates(samples, source) if find_duplicates else {}
    log.info("%s (%s): %s", source.root, source.kind, split_summary(samples, source.classes))
    if warn_rare and getattr(source, "multilabel", False):
        warn_rare_findings(samples, source.classes)
    return Dataset(source=source, samples=samples, classes=source.classes, duplicates=duplicates)


def split_summary(samples: list[Sample], classes: list[str]) -> str:
    """One line such as `train 4172 (NORMAL 1073, PNEUMONIA 3099) | val 492 (...) | test 624 (...)`.

    Multi-label: the positives of each finding, `train 380 (Atelectasis 28+, ...)`."""
    if samples and samples[0].labels:
        raw, split_of = np.array([s.labels for s in samples]), np.array([s.split for s in samples])
        parts = []
        for split in SPLITS:
            pos = (raw[split_of == split] == POSITIVE).sum(axis=0)
            parts.append(f"{split} {int((split_of == split).sum())} ("
                         + ", ".join(f"{n} {p}+" for n, p in zip(classes, pos)) + ")")
        return " | ".join(parts)
    counts = Counter((s.split, s.label) for s in samples)
    parts = []
    for split in SPLITS:
        total = sum(n for (sp, _), n in counts.items() if sp == split)
        per_class = ", ".join(f"{name} {counts[(split, i)]}" for i, name in enumerate(classes))
        parts.append(f"{split} {total} ({per_class})")
    return " | ".join(parts)


def warn_rare_findings(samples: list[Sample], names: list[str]) -> list[str]:
    """One warning naming the findings with no positive (or no negative) among the training rows.

    Counted under the default policies (uncertain ignored, blank negative), which a head may change. Not an error: small subsets of NIH hit this all the time. Heads leave such a finding out and report it as
    null with the reason; the other findings go on. Returns the names warned of.
    """
    train = np.array([s.labels for s in samples if s.split == "train"]).reshape(-1, len(names))
    negative = (train == NEGATIVE) | (train == BLANK)
    rare = [f"{name} ({pos} positive, {neg} negative)"
            for name, pos, neg in zip(names, (train == POSITIVE).sum(axis=0), negative.sum(axis=0))
            if pos == 0 or neg == 0]
    if rare:
        log.warning("%d finding(s) have one class only among the %d training images: %s; they will be left out of "
                    "training and reported as null, the other findings go on", len(rare), len(train), ", ".join(rare))
    return rare


def manifest_hash(samples: list[Sample], classes: list[str]) -> str:
    """sha256 over the class list and one `id\\tlabel\\tsplit\\tgroup` line per sample, in the given order.

    It is part of the cache fingerprint: the cache stores one row per sample in this order, so a different
    file list, relabelling or re-split (another seed or fraction) gives a different hash and is not silently
    mixed with features extracted for the old one.
    """
    h = hashlib.sha256()
    h.update(("classes\t" + "\t".join(classes) + "\n").encode())
    for s in samples:
        raw = ("\t" + ",".join(str(c) for c in s.labels)) if s.labels else ""  # multi-label: the raw codes too
        h.update(f"{s.id}\t{s.label}\t{s.split}\t{s.group}{raw}\n".encode())
    return h.hexdigest()
