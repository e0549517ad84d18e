"""Exported backbone graphs, made once per key and reused: `$TORCH_HOME/headstart-onnx/<name>-<digest>.onnx`.

The key is everything the graph depends on: the backbone, its weights (tag and file sha256; random weights are
identified by a digest of their tensors, since their tag says nothing about the seed), the preprocessing, the
layer/pool taps, the input shape, the torch and onnx versions, and this module's format number. The folder sits
next to torch's hub cache (the weights), so a user who clears one finds the other; `HEADSTART_ONNX_CACHE`
overrides it. Files are written to a process-unique temporary name and renamed, so a reader only ever sees a
whole, verified graph, and two processes exporting the same key at once both succeed (the last rename wins;
their files are the same graph).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from headstart.io import write_bytes_atomic
from headstart.engines.export import DEFAULT_TOLERANCE, export_onnx
from headstart.errors import one_line

log = logging.getLogger(__name__)

CACHE_ENV = "HEADSTART_ONNX_CACHE"  # a folder that replaces $TORCH_HOME/headstart-onnx
GRAPH_FORMAT = 1  # bump when the exported graph changes for the same key (exporter options, opset)


@dataclass(frozen=True)
class GraphKey:
    """What an exported backbone graph depends on; its digest names the cached file."""

    backbone: str  # full registry name, e.g. "resnet18" or "timm:vit_small_patch14_dinov2"
    weights_tag: str  # "imagenet:<Enum>.<MEMBER>", "random" or "file:<basename>"
    weights_sha256: str  # of the weights file; "" for random weights (then `state_digest` is filled in)
    preprocessing: dict  # Preprocessing.to_dict(): the graph's input geometry and the features' meaning
    input_shape: tuple[int, int, int]  # (channels, height, width) of one normalised image
    taps: tuple[str, ...] = ()  # layer/pool taps the module returns, in output order; () for the pooled default
    state_digest: str = ""  # sha256 of the module's tensors when the weights have no file sha256
    versions: dict = field(default_factory=dict)  # torch/onnx versions and GRAPH_FORMAT (filled by `for_module`)

    @classmethod
    def for_module(cls, module: nn.Module, **parts) -> GraphKey:
        """A key with the versions filled in, and the tensor digest when the weights have no file sha256."""
        if not parts.get("weights_sha256") and not parts.get("state_digest"):
            parts["state_digest"] = state_digest(module)
        parts["input_shape"] = tuple(int(s) for s in parts["input_shape"])
        parts["taps"] = tuple(parts.get("taps", ()))
        return cls(**parts, versions=_versions())

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True, default=list)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def filename(self) -> str:
        return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', self.backbone)}-{self.digest()[:16]}.onnx"


@dataclass
class CachedGraph:
    """A verified graph on disk (or only in memory when the cache folder could not be written)."""

    model: bytes | Path  # the file to load, or the bytes when writing it failed
    exported: bool  # True when this call exported it; False when a cached file was reused
    export_seconds: float  # 0.0 when reused
    exporter: str  # "torchscript" | "dynamo"; "" when reused (the file's metadata says)


def cache_dir() -> Path:
    """$HEADSTART_ONNX_CACHE, else `headstart-onnx` beside torch's hub folder ($TORCH_HOME, ~/.cache/torch)."""
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else Path(torch.hub.get_dir()).parent / "headstart-onnx"


def cached_graph(key: GraphKey, module: nn.Module, *, folder: Path | None = None,
                 tolerance: float = DEFAULT_TOLERANCE) -> CachedGraph:
    """The key's graph: reused when the file exists, else exported, verified and written (ExportError if it cannot)."""
    path = (folder or cache_dir()) / key.filename()
    if path.is_file():
        log.debug("reusing the ONNX graph %s", path)
        return CachedGraph(model=path, exported=False, export_seconds=0.0, exporter="")
    log.info("exporting %s to ONNX once; the graph is kept in %s", key.backbone, path.parent)
    device = next(module.parameters(), torch.empty(0)).device
    example = torch.randn(2, *key.input_shape, generator=torch.Generator().manual_seed(0)).to(device)
    result = export_onnx(module, example, None, tolerance=tolerance, metadata={"headstart.key": key.digest()})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, result.model)
    except OSError as exc:  # a read-only or full cache folder: run from memory, export again next time
        log.warning("cannot keep the ONNX graph in %s (%s); using it from memory; set %s to a writable folder",
                    path.parent, one_line(exc), CACHE_ENV)
        return CachedGraph(model=result.model, exported=True, export_seconds=result.seconds,
                           exporter=result.exporter)
    return CachedGraph(model=path, exported=True, export_seconds=result.seconds, exporter=result.exporter)


def state_digest(module: nn.Module) -> str:
    """sha256 over the module's parameters and buffers (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _versions() -> dict:
    versions = {"graph_format": GRAPH_FORMAT, "torch": torch.__version__}
    try:
        versions["onnx"] = metadata.version("onnx")
    except metadata.PackageNotFoundError:
        versions["onnx"] = ""
    return versions
