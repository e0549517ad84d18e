"""What an extraction asks of a cache file: the sample table, the feature sets and whether --overwrite was given.

Plain data, validated once on construction, so the planner, the stager and the publisher all trust it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from headstart.cache.fingerprint import FINGERPRINT_VERSION, part_digests, set_fingerprint
from headstart.cache.schema import FEATURE_DTYPES, SET_NAME_RE
from headstart.errors import ConfigError


@dataclass
class SamplesTable:
    """The rows of the cache: one per image, in a fixed order that every feature set shares."""

    ids: list[str]  # unique sample ids (path relative to DATA, or "train/00012" for npz rows)
    labels: list[int]  # index into `classes`
    splits: list[str]  # "train" | "val" | "test"
    groups: list[str]  # patient id, "" when unknown
    classes: list[str]  # class names; `labels` index into this
    manifest_hash: str  # identifies images, labels and splits; part of every fingerprint
    attrs: dict = field(default_factory=dict)  # extra JSON-able root metadata (source, split_config, duplicates)
    task: str = ""  # binary | multiclass | multilabel (root attr `task`); "" for tables made before tasks
    label_matrix: np.ndarray | None = None  # multilabel: (N, L) int8 raw codes, columns named by `classes`

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class FeatureSetSpec:
    """One requested feature set: what computes it and how it is stored."""

    name: str  # HDF5 name under /features: backbones.names.feature_set_name(backbone, layer, pool)
    backbone: str  # registry name with its provider prefix ("resnet18", "timm:resnet18")
    weights_tag: str  # "imagenet:<enum>", "random" or "file:<name>"
    weights_sha256: str  # of the weights file; "" for random weights (their seed and state digest are in `parts`)
    preprocessing: dict  # Preprocessing.to_dict()
    dim: int  # feature dimension D
    fingerprint: str  # compute_fingerprint(...) of the fields above plus the table's manifest hash
    dtype: str = "float16"  # storage dtype: float16 halves the file; float32 on request
    parts: dict = field(default_factory=dict)  # provider parts, layer/pool, engine, precision, random state (hashed)
    attrs: dict = field(default_factory=dict)  # descriptive scalar attributes (layer, pool, provider...), not hashed
    version: int = FINGERPRINT_VERSION  # the fingerprint version; older only when keeping an old set as it is

    def identity(self) -> dict:
        """The attributes the fingerprint is computed from, under their stored names (see `set_fingerprint`).
        `fingerprint_parts` is stored only when there are parts, as sets made before them have none; the per-part
        digests let `verify` name a part whose attribute changed after extraction."""
        identity = {"backbone": self.backbone, "weights": self.weights_tag, "weights_sha256": self.weights_sha256,
                    "preprocessing": self.preprocessing, "fingerprint_version": self.version}
        if self.parts:
            identity["fingerprint_parts"] = self.parts
        identity["fingerprint_digests"] = part_digests(identity)
        return identity

    def staged_entry(self) -> dict:
        """How the staging area's state.json describes this set; staged parts are resumed only when it matches."""
        return {"fingerprint": self.fingerprint, "dim": self.dim, "dtype": self.dtype}


@dataclass(frozen=True)
class CacheRequest:
    """One extraction's request of the cache at `path`. Construction checks the table and the specs."""

    path: Path
    table: SamplesTable
    specs: dict[str, FeatureSetSpec]  # by set name, in request order
    overwrite: bool = False  # replace sets or a headstart cache made for another request (never a foreign file)

    @classmethod
    def of(cls, path: str | Path, table: SamplesTable, specs: list[FeatureSetSpec], *,
           overwrite: bool = False) -> "CacheRequest":
        _check_table(table)
        _check_specs(specs, table)
        return cls(Path(path), table, {spec.name: spec for spec in specs}, overwrite)


def _check_table(t: SamplesTable) -> None:
    n = len(t.ids)
    if n == 0:
        raise ValueError("the samples table is empty")
    for name in ("labels", "splits", "groups"):
        if len(getattr(t, name)) != n:
            raise ValueError(f"samples table has {n} ids but {len(getattr(t, name))} {name}")
    if len(set(t.ids)) != n:
        raise ValueError("sample ids must be unique")
    labels = np.asarray(t.labels)
    if t.task == "multilabel":
        m = t.label_matrix
        if m is None or m.dtype != np.int8 or m.shape != (n, len(t.classes)) or (labels != -1).any():
            raise ValueError("a multilabel table needs an (N, L) int8 label_matrix, one column per class, labels -1")
        if not np.isin(m, (1, 0, -1, -2)).all():
            raise ValueError("label_matrix holds values other than the codes 1, 0, -1, -2")
        return
    if labels.min() < 0 or labels.max() >= len(t.classes):
        raise ValueError(f"labels must index the {len(t.classes)} classes")


def _check_specs(specs: list[FeatureSetSpec], table: SamplesTable) -> None:
    if not specs:
        raise ValueError("no feature sets requested")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"feature set names repeat: {names}; give each -b a distinct name")
    for spec in specs:
        if not SET_NAME_RE.match(spec.name):
            raise ConfigError(f"feature set name {spec.name!r} is not allowed; use letters, digits, '_', '-', '.', "
                              "':' or '+' (no '/')")
        if spec.dtype not in FEATURE_DTYPES:
            raise ConfigError(f"feature dtype {spec.dtype!r} is not supported; use one of {', '.join(FEATURE_DTYPES)}")
        if spec.dim <= 0:
            raise ValueError(f"feature set {spec.name!r} has dim {spec.dim}")
        if spec.fingerprint != set_fingerprint(spec.identity(), table.manifest_hash):
            raise ValueError(
                f"feature set {spec.name!r}: fingerprint does not match its fields and the table's manifest hash"
            )
