"""Inference engines for frozen backbones: PyTorch eager, or onnxruntime on an exported, verified graph.

Stage-one level: imports backbones, device, errors and the durable-write helper, never heads, evaluation or
apply. `export_onnx` is the package's one ONNX exporter (the CPU engine's graph cache and `headstart export`).
"""

from headstart.engines.export import DEFAULT_TOLERANCE, ExportResult, export_onnx, onnx_installed, require_onnx
from headstart.engines.graph_cache import CACHE_ENV, CachedGraph, GraphKey, cache_dir, cached_graph
from headstart.engines.resolve import ENGINES, Engine, EngineChoice, FirstBatchCheck, choose_engine, resolve_engine
from headstart.engines.runtime import OnnxEngine, TorchEngine, onnx_threads

__all__ = [
    "CACHE_ENV", "DEFAULT_TOLERANCE", "ENGINES", "CachedGraph", "Engine", "EngineChoice", "ExportResult",
    "FirstBatchCheck", "GraphKey", "OnnxEngine", "TorchEngine", "cache_dir", "cached_graph", "choose_engine",
    "export_onnx", "onnx_installed", "onnx_threads", "require_onnx", "resolve_engine",
]
