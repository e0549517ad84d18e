"""Which engine runs a frozen backbone, and the fallback to torch that never costs the user a traceback.

`choose_engine` is the pure rule (tested as a table): `auto` is onnxruntime on the CPU when it is installed and
the precision is fp32, torch everywhere else (on CUDA torch's fp16/channels_last path stays the engine).
`resolve_engine` carries it out: it fetches or exports the graph, and wraps onnxruntime in a check against torch
on the first real batch. A model that cannot be exported, or whose graph differs from PyTorch, runs on torch,
and one warning line says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from headstart.backbones.types import Backbone
from headstart.engines.export import DEFAULT_TOLERANCE, INSTALL_HINT, onnx_installed
from headstart.engines.features import Features, feature_scale, first_rows, max_abs_diff
from headstart.engines.graph_cache import CachedGraph, GraphKey, cached_graph
from headstart.engines.runtime import OnnxEngine, TorchEngine, onnx_threads, spinning_wanted
from headstart.errors import ConfigError, DependencyError, ExportError, one_line
from headstart.precision import ENGINES

log = logging.getLogger(__name__)

# Rows of real images run through both engines before onnxruntime is named: the check costs a forward of each engine
# on them. A graph that takes another path on real data differs on any real image, so more rows buy little; 16 cost
# densenet121 3.0-3.2 CPU s per command against 0.8 for 4 (this 2-core machine, load average 13.6).
CHECK_ROWS = 4


class Engine(Protocol):
    """What extraction calls: a normalised (B, C, H, W) float batch -> the module's outputs as numpy."""

    name: str  # "torch" | "onnxruntime": the engine that computes the features (fingerprint, attributes)

    @property
    def tag(self) -> str: ...  # name and version, e.g. "onnxruntime 1.32.0" (attributes)

    def __call__(self, x: torch.Tensor) -> Features: ...

    def describe(self) -> dict: ...  # the feature set's engine attributes


@dataclass(frozen=True)
class EngineChoice:
    name: str  # "torch" | "onnxruntime"
    reason: str  # why, for the log


def choose_engine(spec: str, device: torch.device, *, amp_dtype: torch.dtype | None,
                  onnx_available: bool) -> EngineChoice:
    """The engine for a request; an explicit request that cannot be met is refused, `auto` never is."""
    if spec not in ENGINES:
        raise ConfigError(f"--engine {spec!r} is not valid; expected one of {', '.join(ENGINES)}")
    if spec == "torch":
        return EngineChoice("torch", "--engine torch")
    explicit = spec == "onnxruntime"
    if device.type != "cpu":
        if explicit:
            raise ConfigError(f"--engine onnxruntime runs on the CPU; on {device} use --engine torch (or auto), "
                              "or pass --device cpu")
        return EngineChoice("torch", f"torch is the engine on {device.type}")
    if amp_dtype is not None:
        if explicit:
            raise ConfigError("--engine onnxruntime computes in fp32; pass --precision fp32 (or auto), or use "
                              "--engine torch for bf16")
        return EngineChoice("torch", "autocast precision asked for: torch")
    if not onnx_available:
        if explicit:
            raise DependencyError(f"--engine onnxruntime needs onnx and onnxruntime: {INSTALL_HINT}")
        return EngineChoice("torch", f"onnxruntime is not installed ({INSTALL_HINT} for a faster CPU engine)")
    return EngineChoice("onnxruntime", "onnxruntime on the CPU" + ("" if explicit else " (auto)"))


def resolve_engine(spec: str, device: torch.device, *, backbone: Backbone, amp_dtype: torch.dtype | None = None,
                   module: nn.Module | None = None, taps: tuple[str, ...] = (),
                   input_shape: tuple[int, int, int] | None = None, tolerance: float = DEFAULT_TOLERANCE,
                   folder: Path | None = None) -> Engine:
    """The engine that will run `backbone` (or `module`, its tapped variant) on `device`.

    `input_shape` is one normalised image: (channels, input_size, input_size) of the backbone's preprocessing
    unless given.

    Raises ConfigError/DependencyError only for an explicit request that cannot be met; every failure of the
    ONNX path itself falls back to torch with one warning line.
    """
    choice = choose_engine(spec, device, amp_dtype=amp_dtype, onnx_available=onnx_installed())
    reference = TorchEngine(backbone.module if module is None else module, device, amp_dtype=amp_dtype)
    if choice.name == "torch":
        log.debug("%s: %s", backbone.name, choice.reason)
        return reference
    key = GraphKey.for_module(reference.module, backbone=backbone.name, weights_tag=backbone.weights_tag,
                              weights_sha256=backbone.weights_sha256,
                              preprocessing=backbone.preprocessing.to_dict(), taps=taps,
                              input_shape=input_shape or (backbone.preprocessing.channels,
                                                          backbone.preprocessing.input_size,
                                                          backbone.preprocessing.input_size))
    try:
        graph, engine = _load(key, reference.module, tolerance=tolerance, folder=folder)
    except ExportError as exc:
        log.warning("%s runs on torch: %s", backbone.name, one_line(exc, limit=400))
        return reference
    return FirstBatchCheck(engine, reference, label=backbone.name, graph=graph, tolerance=tolerance)


def _load(key: GraphKey, module: nn.Module, *, tolerance: float,
          folder: Path | None) -> tuple[CachedGraph, OnnxEngine]:
    """The cached (or freshly exported) graph in an onnxruntime session; a cached file that will not load is
    exported again once (an interrupted disk or another onnxruntime); any other failure is an ExportError."""
    graph = cached_graph(key, module, folder=folder, tolerance=tolerance)
    threads, spinning = onnx_threads(), spinning_wanted()
    try:
        return graph, OnnxEngine(graph.model, threads=threads, spinning=spinning)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's load errors have no common base class
        if graph.exported or not isinstance(graph.model, Path):
            raise ExportError(f"onnxruntime cannot load the exported graph ({one_line(exc)})") from None
        log.warning("the cached ONNX graph %s does not load (%s); exporting it again", graph.model, one_line(exc))
        graph.model.unlink(missing_ok=True)
    graph = cached_graph(key, module, folder=folder, tolerance=tolerance)
    try:
        return graph, OnnxEngine(graph.model, threads=threads, spinning=spinning)
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"onnxruntime cannot load the exported graph ({one_line(exc)})") from None


class FirstBatchCheck:
    """onnxruntime, checked against torch on the first real batch; torch for good when they differ.

    The export was verified on a random batch; real images can take paths a random batch does not (a
    data-dependent branch traced one way). The first `CHECK_ROWS` rows of the first batch go through both
    engines; above the tolerance (absolute, or relative to the largest feature value when that exceeds 1), one
    warning says why and torch computes every batch, this one included.
    """

    def __init__(self, primary: OnnxEngine, reference: TorchEngine, *, label: str, graph: CachedGraph,
                 tolerance: float = DEFAULT_TOLERANCE):
        self.primary, self.reference, self.label, self.graph = primary, reference, label, graph
        self.tolerance = tolerance
        self.active: OnnxEngine | TorchEngine | None = None  # None until the first batch decided
        self.max_abs_diff: float | None = None  # first-batch difference between the engines
        self.fallback = ""  # why torch took over, when it did

    @property
    def name(self) -> str:
        return (self.active or self.primary).name

    @property
    def tag(self) -> str:
        return (self.active or self.primary).tag

    def __call__(self, x: torch.Tensor) -> Features:
        if self.active is None:
            out = self.primary(x)
            if self._decide(first_rows(out, CHECK_ROWS), x[:CHECK_ROWS]):
                return out
        return self.active(x)

    def check(self, x: torch.Tensor) -> str:
        """Decide the engine on these real rows now (before a fingerprint names it); returns the engine's name.

        Extraction calls this on the first rows of the data set before it plans the cache, so a fallback can
        never leave one feature set computed by two engines. Later calls change nothing.
        """
        if self.active is None:
            self._decide(self.primary(x[:CHECK_ROWS]), x[:CHECK_ROWS])
        return self.name

    def _decide(self, onnx_rows: Features, x: torch.Tensor) -> bool:
        """Compare onnxruntime's rows with torch's on the same input; True when onnxruntime stays."""
        reference = self.reference(x)
        self.max_abs_diff = max_abs_diff(onnx_rows, reference)
        # Relative above unit scale: torchxrayvision feeds +-1024 inputs, so its features are in the hundreds and
        # float32 rounding alone differs by ~1e-6 of that (8e-4 measured on real X-rays, random weights).
        limit = self.tolerance * max(1.0, feature_scale(reference))
        if self.max_abs_diff <= limit:
            self.active = self.primary
            log.debug("%s: onnxruntime matches torch on the first batch (max abs difference %.2g)", self.label,
                      self.max_abs_diff)
            return True
        self.fallback = (f"onnxruntime differs from PyTorch by {self.max_abs_diff:.2g} > {limit:.2g} "
                         "on the first batch")
        log.warning("%s runs on torch: %s", self.label, self.fallback)
        self.active = self.reference
        return False

    def describe(self) -> dict:
        info = (self.active or self.primary).describe()
        info.update(onnx_graph=Path(self.graph.model).name if isinstance(self.graph.model, Path) else "(in memory)",
                    onnx_exported=self.graph.exported, onnx_export_seconds=round(self.graph.export_seconds, 3))
        if self.max_abs_diff is not None:  # known once the first batch was checked
            info["onnx_max_abs_diff"] = self.max_abs_diff
        if self.fallback:
            info["onnx_fallback"] = self.fallback
        return info
