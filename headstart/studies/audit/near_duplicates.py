"""Near-identical images in different splits: a copy of a train image in test makes test scores optimistic.

The rule (it must not depend on how good the backbone is: with random weights every radiograph embeds alike).
For each val/test image, its `neighbours` (5) most cosine-similar images of the other splits are candidates.
Distances are judged relative to the image's own neighbourhood: ratio = cosine distance to the candidate /
cosine distance to the 5th candidate, so the absolute scale of a backbone's distances does not matter. A
candidate is a near-duplicate with
- **pixel evidence** (method `phash`): 64-bit DCT hashes (`/samples/meta/phash`) within `hash_max` (4) bits and a
  ratio of at most `ratio_loose` (0.3): the hash decides, the embedding must merely agree that it is close;
- or a **far-closer-than-anything-else** match (method `embedding+phash`): ratio at most `ratio_max` (0.15) and
  hashes within `hash_loose` (10) bits; caches without hashes use the ratio alone (method `embedding`).
Calibration. Shared chest X-rays (224 px; resnet18 and densenet121 with random weights): JPEG q75 + 90% resize
copies were the first candidate every time, at 0-2 bits and ratio <= 0.08; the nearest non-copy had ratio >= 0.26,
and no non-copy candidate came within 4 bits. 64 px phantoms (one template, like anatomy): copies at 0-8 bits and
ratio <= 0.07, while unrelated phantoms within 4 bits sat at ratio >= 0.45.
**Exact duplicates** are the identical files (sha1) that extraction recorded in the root attribute `duplicates`.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from headstart.data.imagemeta import hamming
from headstart.data.types import SPLITS
from headstart.studies.audit.config import AuditConfig
from headstart.studies.audit.inputs import AuditInputs
from headstart.studies.audit.neighbours import cross_split_neighbours, unit_rows
from headstart.studies.audit.result import CheckResult, fmt_counts, skipped

NAME = "near_duplicates"
HASH_BITS = 64


def near_duplicates(inputs: AuditInputs, config: AuditConfig, *, progress: bool = True) -> CheckResult:
    """Near-duplicate (hash + embedding, or embedding-relative) and exact (sha1) pairs across splits."""
    exact = exact_pairs(inputs)
    if inputs.features is None:
        return skipped(NAME, f"{inputs.feature_note}; exact duplicates: {_exact_text(inputs, exact)}",
                       pairs=exact, n_pairs=len(exact))
    usable = inputs.valid & np.isin(inputs.splits, SPLITS)
    present = sorted(set(inputs.splits[usable].tolist()), key=SPLITS.index)
    if len(present) < 2:
        return skipped(NAME, f"the cache has a single split ({', '.join(present) or 'none'}): no pair can cross "
                             "splits", pairs=exact, n_pairs=len(exact))
    queries = np.flatnonzero(usable & (inputs.splits != "train"))
    splits = np.where(usable, inputs.splits, "")
    index, sim = cross_split_neighbours(unit_rows(inputs.features), splits, queries, k=config.neighbours,
                                        block_rows=config.block_rows, progress=progress)
    exact_keys = {frozenset((p["id_a"], p["id_b"])) for p in exact}
    found = [p for p in find_pairs(queries, index, sim, phash=_hashes(inputs), config=config)
             if frozenset((str(inputs.ids[p[0]]), str(inputs.ids[p[1]]))) not in exact_keys]
    pairs = [_pair(inputs, a, b, s, h, method) for a, b, s, h, method in found] + exact
    by_splits = Counter(f"{p['split_a']}-{p['split_b']}" for p in pairs)
    same_group = sum(1 for p in pairs if p["group_a"] and p["group_a"] == p["group_b"])
    near = len(found)
    scale = f"distance relative to the {config.neighbours}th-nearest image in other splits"
    rule = (f"hashes within {config.hash_max} bits and {scale} <= {config.ratio_loose:g}, or {scale} <= "
            f"{config.ratio_max:g} and hashes within {config.hash_loose} bits"
            if _hashes(inputs) is not None else f"embedding only (no hashes in this cache): {scale} <= "
                                                 f"{config.ratio_max:g}")
    if pairs:
        message = (f"{near} near-duplicate and {len(exact)} exact-duplicate pair(s) across splits "
                   f"({fmt_counts(by_splits)}); e.g. {pairs[0]['id_a']} ~ {pairs[0]['id_b']}")
    else:
        message = f"no near-duplicates across splits ({rule}); exact duplicates: {_exact_text(inputs, exact)}"
    data = {"pairs": pairs, "n_pairs": len(pairs), "n_near": near, "n_exact": len(exact),
            "by_splits": dict(by_splits), "same_group_pairs": same_group, "rule": rule}
    return CheckResult(NAME, bool(pairs), message, data)


def find_pairs(queries: np.ndarray, index: np.ndarray, sim: np.ndarray, *, phash: np.ndarray | None,
               config: AuditConfig) -> list[tuple[int, int, float, int | None, str]]:
    """Apply the module's rule to each query's neighbours (from `cross_split_neighbours`), best pairs first:
    (row_a, row_b, cosine, hash bits or None, method).

    `phash` is (N,) uint64 with 0 where a row's hash is unknown (or None: no hashes at all); a candidate whose
    hash or whose query's hash is unknown is judged by the distance ratio alone.
    """
    found: dict[tuple[int, int], tuple[int, int, float, int | None, str]] = {}
    for qi, q in enumerate(queries.tolist()):
        cands = index[qi]
        if len(cands) < 2 or cands[0] < 0 or not np.isfinite(sim[qi, -1]):
            continue  # fewer candidates than the reference neighbour: no relative scale
        ratio = (1.0 - sim[qi].astype(np.float64)) / max(1.0 - float(sim[qi, -1]), 1e-12)
        bits = np.full(len(cands), -1, dtype=np.int64)
        if phash is not None and phash[q] != 0:
            safe = np.maximum(cands, 0)
            known = (cands >= 0) & (phash[safe] != 0)
            bits = np.where(known, hamming(phash[q], phash[safe]), -1).astype(np.int64)
        for j in range(len(cands) - 1):  # the last candidate is the reference itself
            if cands[j] < 0:
                break
            method = _rule(int(bits[j]), float(ratio[j]), config)
            if method:
                _add(found, q, int(cands[j]), float(sim[qi, j]), int(bits[j]) if bits[j] >= 0 else None, method)
    return sorted(found.values(), key=lambda p: (p[3] if p[3] is not None else HASH_BITS, -p[2]))


def _rule(bits: int, ratio: float, config: AuditConfig) -> str | None:
    """The module docstring's rule for one candidate (`bits` -1 when a hash is unknown)."""
    if 0 <= bits <= config.hash_max and ratio <= config.ratio_loose:
        return "phash"
    if ratio <= config.ratio_max and bits <= config.hash_loose:
        return "embedding" if bits < 0 else "embedding+phash"
    return None


def exact_pairs(inputs: AuditInputs) -> list[dict]:
    """Cross-split pairs of identical files from the root attribute `duplicates` (its examples, up to 10)."""
    record = inputs.root_attrs.get("duplicates") or {}
    row_of = {str(i): r for r, i in enumerate(inputs.ids.tolist())}
    pairs = []
    for example in record.get("examples", []) if isinstance(record, dict) else []:
        rows = [row_of.get(str(i)) for i in example[:2]]
        if len(rows) == 2 and None not in rows:
            pairs.append(_pair(inputs, rows[0], rows[1], 1.0, 0, "sha1"))
    return pairs


def _hashes(inputs: AuditInputs) -> np.ndarray | None:
    """(N,) uint64 hashes with 0 where unknown (no metadata for the row), or None when the cache has none."""
    if not inputs.meta.has("phash", "width"):
        return None
    return np.where(inputs.meta.recorded_rows(), inputs.meta.columns["phash"], np.uint64(0)).astype(np.uint64)


def _add(found: dict, a: int, b: int, similarity: float, bits: int | None, method: str) -> None:
    key = (min(a, b), max(a, b))
    if key not in found:
        found[key] = (a, b, similarity, bits, method)


def _pair(inputs: AuditInputs, a: int, b: int, similarity: float, bits: int | None, method: str) -> dict:
    if SPLITS.index(str(inputs.splits[b])) < SPLITS.index(str(inputs.splits[a])):
        a, b = b, a  # train before val before test
    return {"id_a": str(inputs.ids[a]), "id_b": str(inputs.ids[b]), "split_a": str(inputs.splits[a]),
            "split_b": str(inputs.splits[b]), "group_a": str(inputs.groups[a]), "group_b": str(inputs.groups[b]),
            "similarity": round(float(similarity), 6), "hamming": bits, "method": method}


def _exact_text(inputs: AuditInputs, exact: list[dict]) -> str:
    record = inputs.root_attrs.get("duplicates")
    if not isinstance(record, dict) or not record:
        return "not recorded in this cache"
    return f"{record.get('n_groups', len(exact))} group(s) of identical files across splits"
