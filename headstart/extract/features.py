"""Per-batch feature computation: every backbone's feature sets from one decoded batch, one forward pass each.

`build_feature_models` builds each backbone with its layer/pool taps (`backbones.taps.build_extractor`), and
`attach_engine` gives it the engine that runs it (`headstart.engines`: torch, or onnxruntime checked against torch
on real rows before anything is named after it). `compute_features(models, batch, device=...)` then normalises
the batch's crops for each backbone, runs its engine once and returns `{set name: (B, D) float32}`. Extraction
calls it per batch; `predict` can call the same function on its own batches (any dict holding each model's
`geometry` key as a (B, C, S, S) uint8 tensor), so both compute identical features.

Each model keeps the tallies extraction records: forward seconds, the range of values its network was fed, and
per-set embedding statistics (the sanity checks of `backbones.sanity`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from headstart.backbones.registry import create_backbone
from headstart.backbones.sanity import EmbeddingStats, input_range_warnings
from headstart.backbones.taps import FeatureTaps, TapOutput, build_extractor
from headstart.backbones.types import Backbone
from headstart.data.types import Dataset
from headstart.engines import Engine, FirstBatchCheck, resolve_engine
from headstart.engines.resolve import CHECK_ROWS
from headstart.extract.loader import DecodedImages, collate_crops, geometry_key
from headstart.extract.preprocess import normalize_batch
from headstart.extract.views import ViewPlan, view_features, view_set_name

log = logging.getLogger(__name__)


@dataclass
class FeatureModel:
    """One backbone with its taps and engine, and what extraction tallies while it runs."""

    backbone: Backbone
    taps: FeatureTaps  # `taps(x) -> {set name: (B, D)}`, one forward pass of the backbone
    outputs: list[TapOutput]  # what each set is: name, layer, pool, dim, fingerprint parts, attributes
    engine: Engine | None = None  # set by `attach_engine`
    keep: tuple[str, ...] = ()  # sets `compute_features` returns; () = all of them
    forward_seconds: float = 0.0  # normalise + forward + copy back, summed over batches
    input_range: tuple[float, float] = (math.inf, -math.inf)  # (min, max) of the normalised inputs, valid rows
    stats: dict[str, EmbeddingStats] = field(default_factory=dict)  # per set, valid rows only
    views: dict[str, tuple[str, str]] = field(default_factory=dict)  # view set -> (plain set, kind): extract.views
    view_counts: dict[str, int] = field(default_factory=dict)  # views per row of each kind (K, M)
    view_chunk: int = 64  # views per forward (the extraction batch size)

    @property
    def name(self) -> str:
        return self.backbone.name

    @property
    def geometry(self) -> str:
        """The batch key holding this backbone's crops (shared by backbones of one geometry)."""
        return geometry_key(self.backbone.preprocessing)

    @property
    def set_names(self) -> list[str]:
        """The plain sets, then their view sets (`with_views`)."""
        return [o.name for o in self.outputs] + list(self.views)

    def with_views(self, plan: ViewPlan | None, *, chunk: int) -> None:
        """Add the view sets of every plain set under `plan` (extract --views/--tta)."""
        self.views = {view_set_name(o.name, kind): (o.name, kind) for o in self.outputs
                      for kind in (plan.kinds if plan is not None else ())}
        self.view_counts = {kind: plan.count(kind) for kind in (plan.kinds if plan is not None else ())}
        self.view_chunk = chunk

    def wanted(self) -> list[str]:
        return list(self.keep) or self.set_names

    def engine_line(self, reason: str) -> str:
        """The one log line saying which engine computes the backbone's sets, and why."""
        info = self.engine.describe()
        notes = [reason]
        if info.get("onnx_exported"):
            notes.append(f"graph exported once in {info['onnx_export_seconds']:.1f} s")
        if "onnx_max_abs_diff" in info and not info.get("onnx_fallback"):
            notes.append(f"first rows within {info['onnx_max_abs_diff']:.1g} of torch")
        if info.get("onnx_fallback"):
            notes.append(f"onnxruntime fell back: {info['onnx_fallback']}")
        return f"{self.name}: engine {self.engine.tag} ({'; '.join(n for n in notes if n)})"

    def sanity(self, name: str) -> tuple[dict, list[str]]:
        """The set's sanity summary (for its attributes) and its one-line warnings."""
        stats = self.stats.get(name, EmbeddingStats())
        expected = self.backbone.preprocessing.value_range
        summary = {**stats.summary(), "expected_input_range": [round(v, 6) for v in expected]}
        warnings = stats.warnings(name)
        if self.input_range[0] <= self.input_range[1]:
            summary["input_range"] = [round(v, 6) for v in self.input_range]
            warnings += input_range_warnings(self.input_range, expected, name=name)
        return summary, warnings


def build_feature_models(names: Sequence[str], *, weights: str, image_size: int | None, seed: int,
                         pools: Sequence[str] = (), layers: Sequence[str] = (),
                         trust_remote_code: bool = False, crop: str = "center", views: ViewPlan | None = None,
                         view_chunk: int = 64) -> list[FeatureModel]:
    """Each backbone (frozen, seeded) with the taps for every (layer, pool) pair; ConfigError on a bad name/pair.
    `crop` (extract --crop) goes into each backbone's preprocessing, hence into its sets' fingerprints; `views`
    (extract --views/--tta) adds each set's view sets, computed `view_chunk` views per forward."""
    models = []
    for name in names:
        backbone = create_backbone(name, weights=weights, image_size=image_size, seed=seed,
                                   trust_remote_code=trust_remote_code)
        backbone.preprocessing = backbone.preprocessing.with_crop(crop)
        taps, outputs = build_extractor(backbone, layers=list(layers), pools=list(pools))
        models.append(FeatureModel(backbone=backbone, taps=taps, outputs=outputs))
        models[-1].with_views(views, chunk=view_chunk)
    return models


def attach_engine(model: FeatureModel, engine: str, device: torch.device, *, amp_dtype: torch.dtype | None,
                  probe: dict | None = None) -> None:
    """Give `model` its engine. An onnxruntime engine is decided at once on the `probe` batch's first rows (real
    images), so the engine named in a fingerprint is the one that computes every batch; without a probe the
    first batch decides."""
    model.engine = resolve_engine(engine, device, backbone=model.backbone, amp_dtype=amp_dtype,
                                  module=model.taps, taps=tuple(o.name for o in model.outputs))
    if isinstance(model.engine, FirstBatchCheck) and probe is not None:
        model.engine.check(_inputs(model, probe, device))


def compute_features(models: Sequence[FeatureModel], batch: dict, *, device: torch.device,
                     valid: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """`{set name: (B, D) float32}` for every model's wanted sets, from one forward pass per model.

    `valid` (B,) marks the rows holding a real image: the others (placeholders for bad images) come back as
    zeros and are left out of the tallies.
    """
    out, _ = compute_all(models, batch, device=device, valid=valid)
    return out


def compute_all(models: Sequence[FeatureModel], batch: dict, *, device: torch.device,
                valid: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """`compute_features` plus the view sets (`FeatureModel.views`), and each view set's valid rows: the rows
    that got views (train rows for `.views`, val/test rows for `.tta`) among the valid ones."""
    out: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    rows = slice(None) if valid is None or valid.all() else torch.from_numpy(np.asarray(valid, dtype=bool))
    for model in models:
        t0 = time.perf_counter()
        wanted = model.wanted()
        plain = [name for name in wanted if name not in model.views]
        if plain:
            x = _inputs(model, batch, device)
            if valid is None or valid.any():
                lo, hi = torch.aminmax(x[rows])
                model.input_range = (min(model.input_range[0], float(lo)), max(model.input_range[1], float(hi)))
            features = model.engine(x)
            for name in plain:
                y = features[name]
                if valid is not None and not valid.all():
                    y[~valid] = 0.0
                    model.stats.setdefault(name, EmbeddingStats()).update(y[valid])
                else:
                    model.stats.setdefault(name, EmbeddingStats()).update(y)
                out[name] = y
        for kind in dict.fromkeys(model.views[n][1] for n in wanted if n in model.views):
            bases = [model.views[n][0] for n in wanted if n in model.views and model.views[n][1] == kind]
            views, has = view_features(
                lambda x: model.engine(_normalise(model, x, device)), batch, geometry=model.geometry, kind=kind,
                bases=bases, count=model.view_counts[kind], chunk=model.view_chunk,
                dims={o.name: o.dim for o in model.outputs})
            ok = has if valid is None else has & np.asarray(valid, dtype=bool)
            for name, y in views.items():
                y[~ok] = 0.0
                model.stats.setdefault(name, EmbeddingStats()).update(y[ok])
                out[name], masks[name] = y, ok
        model.forward_seconds += time.perf_counter() - t0  # the engines copy to numpy: device synchronised
    return out, masks


def probe_images(dataset: Dataset, models: Sequence[FeatureModel], *, rows: int = CHECK_ROWS) -> dict[int, dict]:
    """The first images of the data set, decoded (in this process) and cropped for every model, by row, until
    `rows` of them decode: an onnxruntime engine is checked on them before extraction names it. The loop reuses
    these items (`DecodedImages(decoded=...)`), so no image is decoded twice."""
    images = DecodedImages(dataset.source, dataset.samples, np.arange(min(len(dataset.samples), 4 * rows)),
                           [m.backbone.preprocessing for m in models])
    items: dict[int, dict] = {}
    for row in images.rows.tolist():
        items[row] = images.decode_row(row)
        if sum(item["ok"] for item in items.values()) == rows:
            break
    return items


def probe_batch(items: dict[int, dict], models: Sequence[FeatureModel], *, rows: int = CHECK_ROWS) -> dict:
    """The decodable probe items as one batch. When none decoded, seeded random pixels stand in (the export was
    verified on such a batch; the check then repeats it)."""
    geometries = {m.geometry: m.backbone.preprocessing for m in models}
    good = [item for item in items.values() if item["ok"]]
    if good:
        return collate_crops(good, geometries=geometries)
    gen = torch.Generator().manual_seed(0)
    return {key: torch.randint(0, 256, (rows, p.channels, p.input_size, p.input_size), dtype=torch.uint8,
                               generator=gen) for key, p in geometries.items()}


def _inputs(model: FeatureModel, batch: dict, device: torch.device) -> torch.Tensor:
    """The model's normalised input, in the layout its engine runs fastest (NCHW for onnxruntime)."""
    return _normalise(model, batch[model.geometry], device)


def _normalise(model: FeatureModel, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    channels_last = model.engine is None or model.engine.name == "torch"
    return normalize_batch(x, model.backbone.preprocessing, device=device, channels_last=channels_last)

