"""Exact duplicate images across splits, found by content hash.

The same image in train and test (public sets have them, e.g. re-uploads under another name) makes test
scores optimistic. We warn with counts and record them in the cache; we do not silently drop images, since
which copy to drop is the user's call.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from itertools import combinations

from tqdm.auto import tqdm

from headstart.data.types import SPLITS, ImageSource, Sample

log = logging.getLogger(__name__)

MAX_EXAMPLES = 10  # id pairs kept in the record; enough to find the pattern without bloating the cache


def find_cross_split_duplicates(samples: list[Sample], source: ImageSource) -> dict:
    """Hash every sample's stored bytes (sha1) and report identical content that sits in different splits.

    Returns `{"n_groups", "n_images", "pairs": {"train-test": n, ...}, "examples": [[id, id], ...]}`, where a
    group is one distinct content shared across splits, and `pairs` counts cross-split image pairs.
    """
    by_hash: dict[str, list[Sample]] = defaultdict(list)
    for s in tqdm(samples, desc="hashing", unit="img", disable=None, leave=False):
        by_hash[hashlib.sha1(source.raw_bytes(s)).hexdigest()].append(s)

    n_groups = n_images = 0
    pairs: dict[str, int] = defaultdict(int)
    examples: list[list[str]] = []
    for members in by_hash.values():
        if len({s.split for s in members}) < 2:
            continue
        n_groups += 1
        n_images += len(members)
        ranked = sorted(members, key=lambda s: (_rank(s.split), s.id))
        for a, b in combinations(ranked, 2):
            if a.split != b.split:
                pairs[f"{a.split}-{b.split}"] += 1
                if len(examples) < MAX_EXAMPLES:
                    examples.append([a.id, b.id])
    result = {"n_groups": n_groups, "n_images": n_images, "pairs": dict(sorted(pairs.items())), "examples": examples}
    if n_groups:
        counts = ", ".join(f"{k}: {v}" for k, v in result["pairs"].items())
        log.warning("%d image(s) in %d content group(s) are exact duplicates across splits (%s), e.g. %s and %s",
                    n_images, n_groups, counts, examples[0][0], examples[0][1])
    return result


def _rank(split: str) -> int:
    return SPLITS.index(split) if split in SPLITS else len(SPLITS)
