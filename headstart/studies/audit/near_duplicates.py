"""Near-identical images in different splits: a copy of a train image in test makes test scores optimistic.

The rule (it must not depend on how good the backbone is: with random weights every radiograph embeds alike):
- **with perceptual hashes** (`/samples/meta/phash`): a pair needs pixel evidence. For each val/test image, the
  `neighbours` (5) most cosine-similar images of the other splits are candidates, and a candidate is a
  near-duplicate when the two 64-bit DCT hashes differ in at most `hash_max` (4) bits. The embedding only
  proposes candidates; the hash decides. Measured on the shared chest X-rays (224 px, resnet18/densenet121 with
  random weights): JPEG q75 + 90% resize copies were the first neighbour every time, at 0-2 bits; among 2,000
  distinct radiographs 2 in a million pairs fall within 4 bits, and the embedding shortlist removes nearly all.
- **without hashes** (caches made before metadata): a threshold relative to each image's own neighbourhood: the
  nearest cross-split neighbour is a near-duplicate when its cosine distance is at most `ratio_max` (0.15) of
  the distance to the 5th nearest. Copies measured at most 0.08, distinct images at least 0.25, with either
  backbone: a copy is far closer than anything else, whatever the absolute scale of the distances.
- **exact duplicates** are the identical files (sha1) that extraction recorded in the root attribute `duplicates`.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from headstart.data.imagemeta import hamming
from headstart.data.types import SPLITS
from headstart.studies.audit.config import AuditConfig
from headstart.studies.audit.inputs import AuditInputs
from headstart.studies.audit.neighbours import cross_split_neighbours, unit_rows
from headstart.studies.audit.result import CheckResult, skipped

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
    rule = ("hash within %d bits among the %d nearest embeddings" % (config.hash_max, config.neighbours)
            if _hashes(inputs) is not None else
            "embedding-only (no hashes in this cache): nearest distance <= %.2f x the %d-th nearest"
            % (config.ratio_max, config.neighbours))
    if pairs:
        where = ", ".join(f"{k} {v}" for k, v in sorted(by_splits.items()))
        message = (f"{near} near-duplicate and {len(exact)} exact-duplicate pair(s) across splits ({where}); "
                   f"e.g. {pairs[0]['id_a']} ~ {pairs[0]['id_b']}")
    else:
        message = f"no near-duplicates across splits ({rule}); exact duplicates: {_exact_text(inputs, exact)}"
    data = {"pairs": pairs, "n_pairs": len(pairs), "n_near": near, "n_exact": len(exact),
            "by_splits": dict(by_splits), "same_group_pairs": same_group, "rule": rule}
    return CheckResult(NAME, bool(pairs), message, data)


def find_pairs(queries: np.ndarray, index: np.ndarray, sim: np.ndarray, *, phash: np.ndarray | None,
               config: AuditConfig) -> list[tuple[int, int, float, int | None, str]]:
    """Apply the module's rule to each query's neighbours (from `cross_split_neighbours`), best pairs first:
    (row_a, row_b, cosine, hash bits or None, method).

    `phash` is (N,) uint64 with 0 where a row's hash is unknown; a query whose own hash, or whose nearest
    neighbour's hash, is unknown is judged by the embedding-relative rule instead.
    """
    found: dict[tuple[int, int], tuple[int, int, float, int | None, str]] = {}
    k = index.shape[1]
    for qi, q in enumerate(queries.tolist()):
        cands = index[qi]
        if phash is not None and phash[q] != 0:
            ok = cands >= 0
            known = ok & (phash[np.maximum(cands, 0)] != 0)
            bits = np.where(known, hamming(phash[q], phash[np.maximum(cands, 0)]), HASH_BITS + 1)
            for j in np.flatnonzero(known & (bits <= config.hash_max)):
                _add(found, q, int(cands[j]), float(sim[qi, j]), int(bits[j]), "phash+embedding")
            if known[0] or not ok[0]:
                continue  # the nearest neighbour was judged by its hash: no embedding-only fallback
        if k >= 2 and np.isfinite(sim[qi, -1]) and cands[0] >= 0:
            nearest, reference = 1.0 - float(sim[qi, 0]), 1.0 - float(sim[qi, -1])
            if nearest <= config.ratio_max * reference:
                _add(found, q, int(cands[0]), float(sim[qi, 0]), None, "embedding")
    return sorted(found.values(), key=lambda p: (p[3] if p[3] is not None else HASH_BITS, -p[2]))


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
