"""Cached augmented views: K random views per training image and M test-time views per val/test image.

The views of a feature set are stored beside its plain features, as two sets of their own, so the streaming
writer, the row journal, resume and in-place adds serve them unchanged:
- `/features/<set>.views` (N, K*D): row i holds the K augmented views of a training image, view-major (reshape
  to (N, K, D)); `/valid/<set>.views` is True only for the rows that have them (training rows at extraction);
- `/features/<set>.tta` (N, M*D): the M deterministic test-time views (`data.augment.TTA_CROPS`) of val and test
  rows, the same way.
Their attributes say what they are (`view_of`, `view_kind`, `views`, `view_dim`, `augment`, `view_seed`), and the
preset (with its parameters), K or M and the seed are fingerprint parts, so changing any of them re-extracts
the views and never the plain set. Every view is derived from the one decode of its image
(`extract.loader.DecodedImages`), downscaled first as the plain view is when that makes it smaller
(`extract.preprocess.view_base`), then goes through the same crop and normalisation as the plain view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from headstart.cache.fingerprint import compute_fingerprint
from headstart.cache.plan import FeatureSetSpec, SamplesTable
from headstart.data.augment import MAX_TTA, TTA_CROPS, get_preset
from headstart.errors import ConfigError
from headstart.extract.preprocess import stack_channels_last

VIEW_KINDS = ("views", "tta")  # set-name suffixes; `views` for train rows, `tta` for val and test rows
_SPLITS_OF = {"views": ("train",), "tta": ("val", "test")}
# How a view's pixels are made, in the view sets' fingerprints: 2 warps each view straight into its plain crop in
# one pass (`data.augment`); caches of version 1 (unversioned: five passes, other rounding) re-extract their views
VIEW_PIXELS = 2


@dataclass(frozen=True)
class ViewPlan:
    """`extract --views K --augment PRESET --tta M` (and the extraction seed)."""

    k: int = 0
    m: int = 0
    preset: str = "light"
    seed: int = 0
    tta_everywhere: bool = False  # predict: every row gets the M test-time views, whatever its split

    def validate(self) -> None:
        if self.k < 0:
            raise ConfigError(f"--views {self.k} is invalid; expected 0 or more augmented views per training image")
        if not 0 <= self.m <= MAX_TTA:
            raise ConfigError(f"--tta {self.m} is invalid; expected 0 to {MAX_TTA} test-time views")
        get_preset(self.preset)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind in VIEW_KINDS if self.count(kind))

    def count(self, kind: str) -> int:
        return self.k if kind == "views" else self.m

    def kind_for(self, split: str) -> str | None:
        """Which views a row of `split` gets (None: only its plain view)."""
        if self.tta_everywhere and self.m:
            return "tta"
        return next((kind for kind in self.kinds if split in _SPLITS_OF[kind]), None)


def view_set_name(base: str, kind: str) -> str:
    return f"{base}.{kind}"


def view_specs(base: FeatureSetSpec, plan: ViewPlan, table: SamplesTable) -> list[FeatureSetSpec]:
    """The specs of `base`'s view sets under `plan`: same backbone, weights, preprocessing and engine parts, plus
    the view's parts (kind, count, seed, preset parameters or TTA crops), so their fingerprint names them."""
    specs = []
    for kind in plan.kinds:
        n = plan.count(kind)
        # drawn on the decode, or on the plain view's resize of it when smaller (`extract.preprocess.view_base`)
        view = {"kind": kind, "count": n, "seed": plan.seed, "drawn_on": "decode-or-plain-resize",
                "pixels": VIEW_PIXELS}
        if kind == "views":
            view.update(preset=plan.preset, preset_params=get_preset(plan.preset).to_dict())
        else:
            view["crops"] = [list(c) for c in TTA_CROPS[:n]]
        parts = {**base.parts, "view": view, "view_of": base.fingerprint}
        attrs = {**base.attrs, "view_of": base.name, "view_kind": kind, "views": n, "view_dim": base.dim,
                 "augment": plan.preset if kind == "views" else "tta", "view_seed": plan.seed}
        specs.append(FeatureSetSpec(
            name=view_set_name(base.name, kind), backbone=base.backbone, weights_tag=base.weights_tag,
            weights_sha256=base.weights_sha256, preprocessing=base.preprocessing, dim=base.dim * n,
            dtype=base.dtype, parts=parts, attrs=attrs,
            fingerprint=compute_fingerprint(backbone=base.backbone, weights_tag=base.weights_tag,
                                            weights_sha256=base.weights_sha256, preprocessing=base.preprocessing,
                                            manifest_hash=table.manifest_hash, parts=parts)))
    return specs


def view_key(geometry: str, kind: str) -> str:
    """The batch key of a geometry's views of one kind (a flat (sum of counts, C, S, S) uint8 tensor)."""
    return f"{geometry}|{kind}"


def count_key(geometry: str, kind: str) -> str:
    """The batch key of each row's number of views of that kind (0 or the plan's count)."""
    return f"{geometry}|{kind}#n"


def view_features(engine_run, batch: dict, *, geometry: str, kind: str, bases: list[str], count: int, dims: dict,
                  chunk: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({view set name: (B, count*D) float32}, has (B,) bool) from the batch's views of one kind.

    `engine_run(x_uint8) -> {set name: (n, D)}` runs the backbone on a chunk of views; chunks of at most `chunk`
    views keep the forward the size of a plain batch. Rows without views come back as zeros, has False."""
    counts = batch[count_key(geometry, kind)].numpy().astype(np.int64)
    has = counts == count
    x = batch[view_key(geometry, kind)]
    B = len(counts)
    out = {view_set_name(b, kind): np.zeros((B, count * dims[b]), dtype=np.float32) for b in bases}
    if not has.any():
        return out, has
    parts: dict[str, list[np.ndarray]] = {b: [] for b in bases}
    for start in range(0, x.shape[0], chunk):
        feats = engine_run(x[start:start + chunk])
        for b in bases:
            parts[b].append(np.asarray(feats[b], dtype=np.float32))
    for b in bases:
        flat = np.concatenate(parts[b])  # (sum counts, D), row-major by image then view
        out[view_set_name(b, kind)][has] = flat.reshape(int(has.sum()), count * dims[b])
    return out, has


def stack_views(items: list[dict], keys: list[str]) -> dict[str, torch.Tensor]:
    """Each view key's per-item lists of (C, S, S) crops as one flat tensor, plus each item's count."""
    out = {}
    for key in keys:
        crops = [c for item in items for c in item[key]]
        out[key + "#n"] = torch.tensor([len(item[key]) for item in items], dtype=torch.int64)
        out[key] = stack_channels_last(crops) if crops else torch.zeros((0,), dtype=torch.uint8)
    return out
