"""What `predict` is applied to: DATA images (anything extract reads, or a plain folder of images), or the rows of
a feature cache. Labels are kept where DATA has them under the run's class names; ids are DATA-relative paths.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from headstart.data.folders import EXPECTED
from headstart.data.sources import detect_source
from headstart.data.types import ImageSource, Sample
from headstart.errors import CacheMismatchError, DataError

log = logging.getLogger(__name__)

UNKNOWN = -1  # the label of an image whose class is not known


@dataclass
class Images:
    """DATA listed: samples in id order, each labelled with an index into the run's classes (or UNKNOWN)."""

    source: ImageSource
    samples: list[Sample]
    labelled: bool  # True when DATA named a class for every image, all of them among the run's classes
    raw: np.ndarray | None = None  # multi-label runs: (N, L) raw label codes in the run's finding order


def read_images(data: str | Path, classes: list[str], *, multilabel: bool = False) -> Images:
    """List DATA as extract would, but without needing labels: a flat folder of images is unlabelled DATA.
    A multi-label run reads multi-label DATA's codes for its findings (by name); other labels are not its own."""
    source = detect_source(data, unlabelled=True)
    if not source.samples:
        raise DataError(f"{source.root}: no images found; {EXPECTED}, or a folder of images")
    if multilabel or getattr(source, "multilabel", False):
        return _multilabel_images(source, classes, run_multilabel=multilabel)
    labelled = bool(source.classes) and set(source.classes) <= set(classes)
    if source.classes and not labelled:
        extra = sorted(set(source.classes) - set(classes))
        log.warning("%s: class folder(s) %s are not among the run's classes (%s); predicting without labels",
                    source.root, ", ".join(extra), ", ".join(classes))
    index = {name: i for i, name in enumerate(classes)}
    samples = [replace(s, label=index[source.classes[s.label]] if labelled else UNKNOWN) for s in source.samples]
    return Images(source=source, samples=samples, labelled=labelled)


def _multilabel_images(source: ImageSource, findings: list[str], *, run_multilabel: bool) -> Images:
    """Images of a multi-label source or for a multi-label run: labelled only when both are multi-label and DATA
    names every finding of the run."""
    samples = [replace(s, label=UNKNOWN) for s in source.samples]
    if not (run_multilabel and getattr(source, "multilabel", False)):
        if source.classes:
            log.warning("%s has %s labels and the run is %s; predicting without labels", source.root,
                        "multi-label" if getattr(source, "multilabel", False) else "single-label",
                        "multi-label" if run_multilabel else "single-label")
        return Images(source=source, samples=samples, labelled=False)
    missing = [f for f in findings if f not in source.classes]
    if missing:
        log.warning("%s lacks the run's finding(s) %s; predicting without labels", source.root, ", ".join(missing))
        return Images(source=source, samples=samples, labelled=False)
    order = [list(source.classes).index(f) for f in findings]
    raw = np.array([s.labels for s in source.samples], dtype=np.int8).reshape(len(samples), -1)[:, order]
    return Images(source=source, samples=samples, labelled=True, raw=raw)


# The feature-set attributes that decide what a feature means; equal ones mean features a head can read.
IDENTITY = ("backbone", "weights", "weights_sha256", "random_weights_sha256", "preprocessing", "layer", "pool", "dim")


def _identity(attrs: dict) -> dict:
    ident = {key: attrs.get(key) for key in IDENTITY}
    ident["layer"], ident["pool"] = ident["layer"] or "final", ident["pool"] or "default"
    return ident


def matching_set(feature_sets: dict[str, dict], spec: dict, *, cache: Path) -> str:
    """The cache feature set computed as the head's features were: by name first, else any whose identity matches.

    The fingerprint itself also hashes the data set's manifest, so it differs for new images by design; what
    must match is how each feature was computed.
    """
    want = _identity(spec)
    if want["random_weights_sha256"] is None:  # a head from before random weights were fingerprinted
        want.pop("random_weights_sha256")
    names = [spec.get("name")] + sorted(n for n in feature_sets if n != spec.get("name"))
    for name in names:
        attrs = feature_sets.get(name)
        if attrs is not None and all(_identity(attrs).get(k) == v for k, v in want.items()):
            return name
    have = ", ".join(sorted(feature_sets)) or "none"
    differs = ""
    if spec.get("name") in feature_sets:
        got = _identity(feature_sets[spec["name"]])
        differs = " (" + ", ".join(f"{k} differs" for k, v in want.items() if got.get(k) != v) + ")"
    raise CacheMismatchError(
        f"{cache} has no feature set computed as the head's features were ({spec.get('backbone')}, weights "
        f"{spec.get('weights')}, sha256 {str(spec.get('weights_sha256') or '-')[:12]}; found: {have}{differs}); "
        f"extract DATA with the head's backbone and weights, or pass DATA images instead of --cache")


def label_map(cache_classes: list[str], classes: list[str]) -> np.ndarray | None:
    """Cache label index -> run label index, or None when the cache's classes are not the run's."""
    if not set(cache_classes) <= set(classes):
        return None
    index = {name: i for i, name in enumerate(classes)}
    return np.array([index[name] for name in cache_classes], dtype=np.int64)
