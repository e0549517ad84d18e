"""Fingerprints: what a feature set was computed from, reduced to one comparable hash.

A cached set is reused only when its fingerprint equals the request's, so a change of what computed it, or of the
sample table (images, labels, splits), forces a refusal instead of silent reuse. Whatever can change a feature by
more than float16 storage rounding (about 1e-3 relative) is hashed: the backbone, its weights (for seeded random
weights the seed and the sha256 of the drawn state), the preprocessing and decode path, the provider and its
package version, the layer/pool tap, the engine and the compute precision (fp16/bf16 autocast moves features by
~1e-3). `parts` holds the parts beyond the five base fields. A set made under an older `FINGERPRINT_VERSION` is
refused with a message that says so, never reused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

FINGERPRINT_VERSION = 2  # bump when the hashed fields change, so old fingerprints stop matching
# What each version bump added, for the one-line refusal of a set fingerprinted under an older version.
VERSION_NOTES = {2: "the compute precision and, for random weights, the seed and the sha256 of the drawn state"}


def canonical_json(value: object) -> str:
    """JSON with sorted keys and no whitespace: equal data always gives equal text (tuples become lists)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def compute_fingerprint(
    *, backbone: str, weights_tag: str, weights_sha256: str, preprocessing: dict, manifest_hash: str,
    parts: Mapping | None = None, version: int = FINGERPRINT_VERSION,
) -> str:
    """sha256 hex of the canonical JSON of everything that determines a feature set's values. `version` is the
    fingerprint version the set was made under (older ones are only recomputed to check stored attributes)."""
    payload: dict = {"fingerprint_version": int(version), "backbone": backbone, "weights_tag": weights_tag,
                     "weights_sha256": weights_sha256, "preprocessing": preprocessing, "manifest_hash": manifest_hash}
    if parts:
        payload["parts"] = dict(parts)
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def set_fingerprint(attrs: Mapping, manifest_hash: str) -> str:
    """The fingerprint of a feature set from its stored identity attributes (`FeatureSetSpec.identity`);
    `fingerprint_parts` is absent on sets made before providers, `fingerprint_version` on version-1 sets.

    The one mapping from stored names to `compute_fingerprint`, used to check a request, to re-stamp sets under new
    splits and by `verify`, so the three can never disagree. Raises KeyError, TypeError or ValueError when the
    attributes are missing or not JSON-able.
    """
    return compute_fingerprint(backbone=attrs["backbone"], weights_tag=attrs["weights"],
                               weights_sha256=attrs["weights_sha256"], preprocessing=attrs["preprocessing"],
                               manifest_hash=manifest_hash, parts=attrs.get("fingerprint_parts"),
                               version=stored_version(attrs))


def stored_version(attrs: Mapping) -> int:
    """The fingerprint version a stored set was made under (1: before the attribute existed)."""
    return int(attrs.get("fingerprint_version", 1))


def _flat(identity: Mapping) -> dict:
    """Identity attributes as one level of named parts: `fingerprint_parts` and `preprocessing` keys spread out."""
    flat = {key: identity.get(key) for key in ("backbone", "weights", "weights_sha256")}
    flat.update({f"preprocessing.{k}": v for k, v in dict(identity.get("preprocessing") or {}).items()})
    flat.update(dict(identity.get("fingerprint_parts") or {}))
    return flat


def _show(value: object) -> str:
    text = "none" if value in (None, "") else str(value)
    return text[:12] + "..." if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else text


def part_digests(identity: Mapping) -> dict[str, str]:
    """A short sha256 per named part of an identity, stored beside the fingerprint (`fingerprint_digests`) so that
    `verify` can say which part's stored attribute no longer matches what the fingerprint was computed from."""
    return {key: hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:16]
            for key, value in _flat(identity).items()}


def changed_parts(attrs: Mapping) -> list[str]:
    """The parts whose stored attribute no longer matches the digest recorded at extraction (empty when no digests
    were recorded, or none changed)."""
    recorded = attrs.get("fingerprint_digests") or {}
    now = part_digests(attrs)
    return sorted(key for key in set(recorded) | set(now) if recorded and recorded.get(key) != now.get(key))


def fingerprint_differences(stored: Mapping, wanted: Mapping) -> list[str]:
    """Part by part, how a stored set's identity attributes differ from a request's (`FeatureSetSpec.identity()`),
    e.g. `precision fp32 in the cache, bf16 requested`. A version change is named first, as it explains the rest."""
    out = []
    have_v, want_v = stored_version(stored), stored_version(wanted)
    if have_v != want_v:
        added = "; ".join(VERSION_NOTES[v] for v in range(have_v + 1, want_v + 1) if v in VERSION_NOTES)
        out.append(f"fingerprint version {have_v} in the cache, {want_v} requested"
                   + (f" (version {want_v} also hashes {added})" if added else ""))
    have, want = _flat(stored), _flat(wanted)
    for key in sorted(set(have) | set(want), key=lambda k: (k.startswith("preprocessing."), k)):
        if have.get(key) != want.get(key):
            out.append(f"{key} {_show(have.get(key))} in the cache, {_show(want.get(key))} requested")
    return out


def compute_samples_sha256(
    *, ids: Sequence[str], labels: Sequence[int], splits: Sequence[str], groups: Sequence[str], classes: Sequence[str]
) -> str:
    """sha256 of the sample table as stored, so `verify` can detect damage to /samples (vlen strings carry no
    HDF5 checksum). Also usable as a manifest hash by callers that have nothing better."""
    payload = {"classes": list(classes), "ids": [str(i) for i in ids], "labels": [int(v) for v in labels],
               "splits": [str(s) for s in splits], "groups": [str(g) for g in groups]}
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()
