"""New splits for the images a cache already holds, published through the planner's re-split path.

Splits are metadata. The same images under other splits keep every complete feature set (re-stamped with its
fingerprint under the new manifest hash, exactly as `extract` does when its split options change), the image
metadata and the root attributes; nothing is decoded or extracted. `audit --fix` uses this with the splits it
computed; the writer's lock, temporary file and rename make it as safe as any extraction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from headstart.cache.fingerprint import set_fingerprint, stored_version
from headstart.cache.header import FileKind, read_header
from headstart.cache.plan import Action
from headstart.cache.request import FeatureSetSpec, SamplesTable
from headstart.cache.schema import ROOT_PLAIN_ATTRS, staging_dir
from headstart.cache.writer import CacheWriter
from headstart.data.dataset import manifest_hash
from headstart.data.types import SPLITS, Sample
from headstart.errors import CacheError, ConfigError

log = logging.getLogger(__name__)


def publish_splits(path: str | Path, splits: Sequence[str], *, note: dict | None = None) -> bool:
    """Give the rows of the cache at `path` the new `splits` (one per row, in row order); True when the file changed.

    `note` is recorded as the root attribute `resplit` (what moved and why). Refused, with one line, for a file that
    is not a readable cache, a cache with an unfinished extraction beside it, or a cache without a complete set.
    """
    path = Path(path)
    header = read_header(path)
    if header.kind is not FileKind.CACHE:
        raise CacheError(header.message)
    if len(splits) != len(header.ids) or not set(splits) <= set(SPLITS):
        raise ConfigError(f"{len(splits)} new splits for {len(header.ids)} rows of {path}; expected one of "
                          f"{'/'.join(SPLITS)} per row")
    if staging_dir(path).exists():
        raise CacheError(f"{staging_dir(path)} holds an unfinished extraction; rerun that `headstart extract` command "
                         f"to finish it before changing the splits of {path}")
    samples = [Sample(id=str(i), label=int(y), split=str(s), group=str(g))
               for i, y, s, g in zip(header.ids, header.labels, splits, header.groups)]
    attrs = {k: v for k, v in header.root_attrs.items() if k not in ROOT_PLAIN_ATTRS and k != "classes"}
    if note is not None:
        attrs["resplit"] = note
    table = SamplesTable(ids=[s.id for s in samples], labels=[s.label for s in samples],
                         splits=[s.split for s in samples], groups=[s.group for s in samples],
                         classes=list(header.classes), manifest_hash=manifest_hash(samples, list(header.classes)),
                         attrs=attrs)
    specs = [_kept_spec(path, meta, table.manifest_hash) for meta in header.feature_sets.values() if meta["complete"]]
    if not specs:
        raise CacheError(f"{path} has no complete feature set to keep; extract one first (`headstart extract`)")
    with CacheWriter(path, table, specs) as writer:
        if writer.plan.action is not Action.RESPLIT:  # the same splits: nothing to publish
            return False
        writer.finish(stats={}, skipped=[])
    log.info("published new splits in %s; kept %s without re-extracting", path, ", ".join(s.name for s in specs))
    return True


def _kept_spec(path: Path, meta: dict, manifest: str) -> FeatureSetSpec:
    """The request that keeps an existing set as it is: its own identity, fingerprinted under the new manifest."""
    try:
        fingerprint = set_fingerprint(meta, manifest)
    except (KeyError, TypeError, ValueError):
        raise CacheError(f"feature set '{meta['name']}' in {path} lacks the attributes its fingerprint is computed "
                         f"from; run `headstart cache verify {path}`") from None
    return FeatureSetSpec(name=meta["name"], backbone=meta["backbone"], weights_tag=meta["weights"],
                          weights_sha256=meta["weights_sha256"], preprocessing=meta["preprocessing"], dim=meta["dim"],
                          fingerprint=fingerprint, dtype=meta["dtype"], parts=meta.get("fingerprint_parts") or {},
                          version=stored_version(meta))
