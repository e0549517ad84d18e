"""Fingerprints: what a feature set was computed from, reduced to one comparable hash.

A cached set is reused only when its fingerprint equals the request's, so any change of backbone, weights,
preprocessing, provider (package version, model, pretrained tag), layer/pool tap, engine or the sample table
(images, labels, splits) forces a refusal instead of silent reuse.

`parts` holds what sets made before providers, taps and engines did not have: a provider's fingerprint parts, the
layer and pool when they are not the defaults, and the engine when it is not torch. It is left out of the hash
when empty, so a plain `-b resnet18` set computed by torch keeps the fingerprint it always had.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

FINGERPRINT_VERSION = 1  # bump when the hashed fields change, so old fingerprints stop matching


def canonical_json(value: object) -> str:
    """JSON with sorted keys and no whitespace: equal data always gives equal text (tuples become lists)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def compute_fingerprint(
    *, backbone: str, weights_tag: str, weights_sha256: str, preprocessing: dict, manifest_hash: str,
    parts: Mapping | None = None,
) -> str:
    """sha256 hex of the canonical JSON of everything that determines a feature set's values."""
    payload: dict = {
        "fingerprint_version": FINGERPRINT_VERSION,
        "backbone": backbone,
        "weights_tag": weights_tag,
        "weights_sha256": weights_sha256,
        "preprocessing": preprocessing,
        "manifest_hash": manifest_hash,
    }
    if parts:
        payload["parts"] = dict(parts)
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


# Stored attributes a fingerprint hashes; `fingerprint_parts` is absent on sets made before providers and engines.
IDENTITY_ATTRS = ("backbone", "weights", "weights_sha256", "preprocessing", "fingerprint_parts")


def set_fingerprint(attrs: Mapping, manifest_hash: str) -> str:
    """The fingerprint of a feature set from its identity attributes as stored (`IDENTITY_ATTRS`).

    The one mapping from stored names to `compute_fingerprint`, used to check a request, to re-stamp sets under new
    splits and by `verify`, so the three can never disagree. Raises KeyError, TypeError or ValueError when the
    attributes are missing or not JSON-able.
    """
    return compute_fingerprint(backbone=attrs["backbone"], weights_tag=attrs["weights"],
                               weights_sha256=attrs["weights_sha256"], preprocessing=attrs["preprocessing"],
                               manifest_hash=manifest_hash, parts=attrs.get("fingerprint_parts"))


def compute_samples_sha256(
    *, ids: Sequence[str], labels: Sequence[int], splits: Sequence[str], groups: Sequence[str], classes: Sequence[str]
) -> str:
    """sha256 of the sample table as stored, so `verify` can detect damage to /samples (vlen strings carry no
    HDF5 checksum). Also usable as a manifest hash by callers that have nothing better."""
    payload = {
        "classes": list(classes),
        "ids": [str(i) for i in ids],
        "labels": [int(v) for v in labels],
        "splits": [str(s) for s in splits],
        "groups": [str(g) for g in groups],
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()
