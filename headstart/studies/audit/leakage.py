"""Patient leakage: one patient's images in more than one split make every test metric optimistic.

Carving (`headstart.data.splits`) never splits a patient group, so a leak can only come from splits the data
set gave (Kaggle's folders, a manifest's split column). The check says which case the cache is in.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from headstart.data.types import SPLITS
from headstart.studies.audit.inputs import AuditInputs
from headstart.studies.audit.result import CheckResult, fmt_counts, skipped

NAME = "patient_leakage"
MAX_EXAMPLES = 20  # groups listed in the result; the counts cover all of them

# source kind -> how its splits came about (extraction records the kind in the root attribute `source`)
SPLIT_ORIGIN = {
    "split-folder": "given by the train/val/test folders (a missing or small val, a missing test are carved)",
    "folder": "carved by headstart (grouped by patient)",
    "manifest": "given by the manifest's split column where it has one, otherwise carved (grouped by patient)",
    "npz": "given by the array file's train/val/test keys",
}


def split_origin(root_attrs: dict) -> str:
    """How the cache's splits were made, from its root attributes `source` and `split_config`."""
    source = root_attrs.get("source") if isinstance(root_attrs.get("source"), dict) else {}
    origin = SPLIT_ORIGIN.get(str(source.get("kind", "")), "unknown (the cache does not record its source)")
    config = root_attrs.get("split_config") if isinstance(root_attrs.get("split_config"), dict) else {}
    if config.get("group_pattern"):
        origin += f"; groups from --group-pattern {config['group_pattern']!r}"
    return origin


def patient_leakage(inputs: AuditInputs) -> CheckResult:
    """Groups (patients) present in more than one split, with their image counts per split."""
    origin = split_origin(inputs.root_attrs)
    named = inputs.groups != ""
    if not named.any():
        return skipped(NAME, "no patient groups recorded (extract with --group-pattern, or a manifest group "
                             f"column, to check); splits {origin}", origin=origin, n_groups=0, leaked=[])
    splits_of: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for group, split in zip(inputs.groups[named].tolist(), inputs.splits[named].tolist()):
        splits_of[group][split] += 1
    leaked = sorted((g for g, per in splits_of.items() if len(per) > 1), key=lambda g: -sum(splits_of[g].values()))
    n_images = int(sum(sum(splits_of[g].values()) for g in leaked))
    pairs: dict[str, int] = defaultdict(int)
    for g in leaked:
        present = sorted(splits_of[g], key=lambda s: SPLITS.index(s) if s in SPLITS else len(SPLITS))
        for i, a in enumerate(present):
            for b in present[i + 1:]:
                pairs[f"{a}-{b}"] += 1
    examples = [{"group": g, "splits": dict(splits_of[g])} for g in leaked[:MAX_EXAMPLES]]
    coverage = float(named.mean())
    data = {"origin": origin, "n_groups": len(splits_of), "n_leaked": len(leaked), "n_images": n_images,
            "split_pairs": dict(pairs), "leaked": examples, "grouped_fraction": coverage}
    if leaked:
        message = (f"{len(leaked)} of {len(splits_of)} patient groups span splits ({fmt_counts(pairs)}; "
                   f"{n_images} images), e.g. {leaked[0]}; splits {origin}")
    else:
        message = f"no patient group spans two splits ({len(splits_of)} groups); splits {origin}"
    if coverage < 1.0:
        message += f"; {100 * (1 - coverage):.0f}% of images have no group"
    return CheckResult(NAME, bool(leaked), message, data)
