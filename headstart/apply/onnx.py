"""Export a module to ONNX or torch.export's `.pt2`, verified against PyTorch before anything is written.

`export_onnx` runs `torch.onnx.export` (the TorchScript exporter first, fast and mature; the dynamo exporter
when it fails or computes something else), runs the result in onnxruntime on a seeded random batch one row
larger than the tracing example (so a batch size baked into the graph shows) and refuses, with ExportError, a
graph whose outputs differ from the module's by more than `tolerance`. `export_pt2` does the same with
`torch.export`, checking the re-loaded program. Files are written atomically, and only after the check.

headstart.engines (the onnxruntime feature engine, issue 16) was not on main when this was written; its
exporter takes the same arguments, so `export_onnx` here can be replaced by `engines.export.export_onnx`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from headstart.errors import DependencyError, ExportError, one_line
from headstart.io import replace_durably, write_bytes_atomic

log = logging.getLogger(__name__)

OPSET = 17  # the TorchScript exporter's opset: run by onnxruntime >= 1.14 on every platform
INPUT_NAME, OUTPUT_NAME = "input", "probabilities"
INSTALL_HINT = "pip install 'headstart[export]'"


@dataclass
class ExportCheck:
    """How an export was made and how close it came to PyTorch."""

    path: Path
    exporter: str  # torchscript | dynamo | torch.export
    max_abs_diff: float  # exported vs PyTorch on the check batch
    check_rows: int  # rows of the random check batch
    seconds: float  # export + verification


def require_onnx() -> None:
    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise DependencyError(f"{' and '.join(missing)} not installed; ONNX export and ONNX models need them: "
                              f"{INSTALL_HINT}")


def check_batch(example: torch.Tensor, rows: int) -> torch.Tensor:
    """A seeded uniform [0, 1) batch shaped like `example`, with `rows` rows."""
    return torch.rand((rows, *example.shape[1:]), generator=torch.Generator().manual_seed(0))


def export_onnx(module: nn.Module, example: torch.Tensor, path: str | Path, *, tolerance: float, check_rows: int,
                metadata: dict[str, str] | None = None) -> ExportCheck:
    """Export `module` (eval mode) traced on `example` with a dynamic batch axis; verify; write `path`."""
    require_onnx()
    start = time.perf_counter()
    check = check_batch(example, max(check_rows, example.shape[0] + 1))
    with torch.no_grad():
        reference = module(check).numpy()
    reasons = []
    for exporter, build in (("torchscript", _torchscript), ("dynamo", _dynamo)):
        try:
            with quiet(), torch.no_grad():
                model = build(module, example)
            diff = float(np.max(np.abs(run_onnx(model, check.numpy()) - reference)))
        except Exception as exc:  # noqa: BLE001 - exporters raise anything; each failure becomes one reason
            reasons.append(f"{exporter}: {type(exc).__name__}: {one_line(exc, limit=120)}")
            continue
        if not diff <= tolerance:
            reasons.append(f"{exporter}: onnxruntime differs from PyTorch by {diff:.2g} > {tolerance:g}")
            continue
        write_bytes_atomic(path, _with_metadata(model, metadata or {}))
        return ExportCheck(Path(path), exporter, diff, len(check), time.perf_counter() - start)
    raise ExportError(f"the model cannot be exported to ONNX ({'; '.join(reasons)}); nothing was written")


def run_onnx(model: bytes | str | Path, x: np.ndarray) -> np.ndarray:
    """One onnxruntime CPU run (for the check; `predict` keeps its own session)."""
    return onnx_session(model).run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]


def onnx_session(model: bytes | str | Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings are about graph details, not the user's data
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                providers=["CPUExecutionProvider"])


def export_pt2(module: nn.Module, example: torch.Tensor, path: str | Path, *, tolerance: float,
               check_rows: int) -> ExportCheck:
    """`torch.export` with a dynamic batch, saved, re-loaded and checked against `module`; then published."""
    start = time.perf_counter()
    path = Path(path)
    check = check_batch(example, max(check_rows, example.shape[0] + 1))
    try:
        with quiet(), torch.no_grad():
            program = torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
            reference = module(check)
    except Exception as exc:  # noqa: BLE001 - torch.export refuses models in many ways; one line each
        raise ExportError(f"torch.export cannot export the model ({type(exc).__name__}: "
                          f"{one_line(exc, limit=140)}); try -o MODEL.onnx") from None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp-", suffix=".pt2", dir=path.parent)  # torch wants .pt2
    os.close(fd)
    try:
        torch.export.save(program, tmp)
        with quiet(), torch.no_grad():
            diff = float((torch.export.load(tmp).module()(check) - reference).abs().max())
        if not diff <= tolerance:
            raise ExportError(f"the re-loaded .pt2 program differs from PyTorch by {diff:.2g} > {tolerance:g}; "
                              "nothing was written")
        replace_durably(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return ExportCheck(path, "torch.export", diff, len(check), time.perf_counter() - start)


def _torchscript(module: nn.Module, example: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    choose = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    torch.onnx.export(module, (example,), buf, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                      dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, opset_version=OPSET,
                      do_constant_folding=True, **choose)
    return buf.getvalue()


def _dynamo(module: nn.Module, example: torch.Tensor) -> bytes:
    if importlib.util.find_spec("onnxscript") is None:
        raise ExportError(f"onnxscript is not installed ({INSTALL_HINT})")
    program = torch.onnx.export(module, (example,), None, dynamo=True, verbose=False, input_names=[INPUT_NAME],
                                output_names=[OUTPUT_NAME], dynamic_shapes=({0: torch.export.Dim("batch")},),
                                external_data=False)
    return program.model_proto.SerializeToString()


def _with_metadata(model: bytes, metadata: dict[str, str]) -> bytes:
    if not metadata:
        return model
    import onnx

    proto = onnx.load_model_from_string(model)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(key), str(value)
    return proto.SerializeToString()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Exporter warnings (deprecations, TracerWarnings) are not the user's business: the check is what counts."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
