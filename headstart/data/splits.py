"""Carve missing validation and test splits: stratified by class, grouped by patient, deterministic.

- Given splits are kept, and a given test split is never touched: results stay comparable with everyone
  else who reports on that test set.
- Missing or tiny val (the Kaggle chest X-ray set ships 16 images) is topped up from train, so thresholds and
  model selection rest on more than a handful of images. The tiny given val stays in val.
- Missing test is carved from train before val.
- Carving moves whole groups (patients): several images of one patient on both sides of a split inflate every
  metric. Ungrouped images (group "") are groups of one.
- Carving is stratified: a greedy pass over the groups in a seeded random order takes a group whenever that
  brings the carved per-class counts closer to their targets, so the rare class is represented in proportion
  (`data.sampling.carve`, the sampler every subset goes through).
- Multi-label samples (`Sample.labels`) are carved by iterative stratification over whole groups
  (`multilabel_split.py`), so each finding's positives are spread in proportion, rare findings first.
- Inputs are sorted by id first, so the result depends only on the samples and the seed, not on the order a
  file system lists files: extract and finetune, run on different days, derive identical splits.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import replace

import numpy as np

from headstart.data.labelcodes import POSITIVE
from headstart.data.multilabel_split import iterative_carve
from headstart.data.sampling import carve
from headstart.data.types import SPLITS, Sample, SplitConfig
from headstart.errors import ConfigError, DataError

log = logging.getLogger(__name__)

_TEST_STREAM, _VAL_STREAM = 0, 1  # separate random streams, so the val carve does not shift the test carve


def assign_splits(samples: list[Sample], config: SplitConfig, *, classes: list[str]) -> list[Sample]:
    """Return new samples (same order as given) with every `split` set to train, val or test."""
    _check_config(config)
    for s in samples:
        if s.split not in ("",) + SPLITS:
            raise DataError(f"{s.id}: split {s.split!r} is not one of train, val, test")
        if not 0 <= s.label < len(classes):
            raise DataError(f"{s.id}: label {s.label} is outside the {len(classes)} classes {classes}")

    ordered = sorted(samples, key=lambda s: s.id)
    split_of = {s.id: s.split for s in ordered}
    pool = [s for s in ordered if s.split in ("", "train")]  # train plus unassigned: the only carvable images
    if not pool:
        raise DataError("no train images (and none without a split); expected a train split to learn from")

    if not any(s.split == "test" for s in ordered):
        n_test = round(config.test_fraction * len(ordered))
        carved = _carve(pool, n_test, seed=(config.seed, _TEST_STREAM))
        for sid in carved:
            split_of[sid] = "test"
        pool = [s for s in pool if s.id not in carved]
        log.info("carved a test split of %d images (%.0f%% of all, grouped by patient)", len(carved),
                 100 * config.test_fraction)

    n_val_given = sum(1 for s in ordered if s.split == "val")
    if n_val_given < config.min_val:
        target = round(config.val_fraction * (len(pool) + n_val_given))
        carved = _carve(pool, max(0, target - n_val_given), seed=(config.seed, _VAL_STREAM))
        for sid in carved:
            split_of[sid] = "val"
        pool = [s for s in pool if s.id not in carved]
        if carved:
            log.info("val had %d images (< %d); carved %d more from train (grouped by patient)", n_val_given,
                     config.min_val, len(carved))

    for s in pool:
        split_of[s.id] = "train"
    result = [replace(s, split=split_of[s.id]) for s in samples]
    _warn_group_leaks(result)
    return result


def _carve(pool: list[Sample], n_target: int, *, seed: tuple[int, int]) -> set[str]:
    """Ids of whole groups from `pool` totalling about `n_target` images, stratified by label."""
    # Hand-written (data.sampling), not sklearn: GroupShuffleSplit does not stratify, StratifiedGroupKFold only
    # cuts 1/k of the pool (not --val-fraction 0.15, nor a top-up of a given val), and either would move every
    # existing user's images to other splits for the same --seed.
    if pool and pool[0].labels:
        return _carve_multilabel(pool, n_target, seed=seed)
    rows = carve([s.id for s in pool], [s.group for s in pool], [s.label for s in pool], n=n_target, seed=seed)
    return {pool[i].id for i in rows}


def _carve_multilabel(pool: list[Sample], n_target: int, *, seed: tuple[int, int]) -> set[str]:
    """Whole groups totalling about `n_target` images, each finding's positives in proportion."""
    positives = (np.array([s.labels for s in pool]) == POSITIVE).astype(np.int64)
    rows = iterative_carve([s.id for s in pool], [s.group for s in pool], positives, n=n_target, seed=seed)
    return {pool[i].id for i in rows}


def _warn_group_leaks(samples: list[Sample]) -> None:
    """Carving never splits a group, but given splits may already share patients: say so, do not fix it."""
    splits_of: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        if s.group:
            splits_of[s.group].add(s.split)
    leaks = sorted(g for g, splits in splits_of.items() if len(splits) > 1)
    if leaks:
        log.warning("%d patient group(s) appear in more than one split (e.g. %s); the given splits put them there",
                    len(leaks), ", ".join(leaks[:3]))


def _check_config(config: SplitConfig) -> None:
    if not 0 < config.val_fraction < 1 or not 0 < config.test_fraction < 1:
        raise ConfigError(
            f"--val-fraction {config.val_fraction} / --test-fraction {config.test_fraction}: expected fractions "
            "strictly between 0 and 1"
        )
    if config.val_fraction + config.test_fraction >= 1:
        raise ConfigError(
            f"--val-fraction {config.val_fraction} + --test-fraction {config.test_fraction} >= 1 leaves nothing "
            "to train on; expected a sum below 1 (e.g. 0.1 and 0.2)"
        )
    if config.min_val < 0:
        raise ConfigError(f"min_val {config.min_val}: expected 0 or more images")
