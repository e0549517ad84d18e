"""The one ONNX exporter: `torch.onnx.export`, verified against PyTorch with onnxruntime, written atomically.

Both the CPU feature engine (its graph cache) and `headstart export` go through `export_onnx`, so a graph
that reaches disk always ran in onnxruntime and matched the PyTorch module within the tolerance.

Exporter order, measured here (torch 2.14, onnxruntime 1.32, 2 shared cores, random weights): the TorchScript
exporter (`dynamo=False`) took 0.3-1.0 s for resnet18, 2.8 s for densenet121 and 4.8 s for vit_b_16; the
torch.export-based one (`dynamo=True`) took 4.6 s, 23.7 s and 12.3 s. Both graphs ran at the same speed in
onnxruntime (within 10 %) with the same max abs difference (1e-6 to 5e-6). The export is the one-time cost the
engine must earn back, so TorchScript goes first. The dynamo exporter is the second try: for a model the tracer
cannot take or traces wrongly (caught by the verification), and the only one once torch drops TorchScript.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import logging
import re
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from headstart.io import write_bytes_atomic
from headstart.engines.features import Features, from_list, max_abs_diff, output_names, to_numpy
from headstart.errors import DependencyError, ExportError, one_line

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 1e-4  # max abs difference allowed between onnxruntime and PyTorch (float16 storage is ~1e-3)
OPSET = 17  # TorchScript exporter's ai.onnx opset: run by onnxruntime >= 1.14 on every platform
INPUT_NAME = "input"
INSTALL_HINT = "pip install 'headstart[export]'"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the dynamo exporter colours its messages
OUTPUTS_KEY = "headstart.outputs"  # metadata_props: JSON list of output names, in the module's order
DICT_OUTPUT_KEY = "headstart.dict_output"  # metadata_props: "true" when the module returned a dict


@dataclass
class ExportResult:
    """A verified ONNX model and how it was made."""

    model: bytes  # the serialised ONNX model that was verified (and written, when a path was given)
    path: Path | None  # where it was written; None for an in-memory export
    exporter: str  # "torchscript" or "dynamo"
    seconds: float  # export + verification wall time: the one-time cost
    max_abs_diff: float  # onnxruntime vs PyTorch on the check batch
    output_names: list[str]  # ONNX output names, in the module's output order
    dict_output: bool  # True when the module returns a dict of tensors


def onnx_installed() -> bool:
    """True when onnx and onnxruntime can be imported (checked without importing them)."""
    return not _missing_onnx()


def require_onnx() -> None:
    """DependencyError naming the pip command when onnx or onnxruntime is missing."""
    missing = _missing_onnx()
    if missing:
        raise DependencyError(f"{' and '.join(missing)} not installed; ONNX export and the onnxruntime engine "
                              f"need them: {INSTALL_HINT}")


def _missing_onnx() -> list[str]:
    return [m for m in ("onnx", "onnxruntime") if not _importable(m)]  # find_spec: no import cost


def export_onnx(module: nn.Module, example_input: torch.Tensor, path: str | Path | None, *,
                dynamic_batch: bool = True, tolerance: float = DEFAULT_TOLERANCE,
                check_input: torch.Tensor | None = None, metadata: dict[str, str] | None = None) -> ExportResult:
    """Export `module` (eval mode) traced on `example_input`, verify it and write it to `path` atomically.

    The graph takes one float batch named `input` (batch axis dynamic unless `dynamic_batch=False`) and returns
    `features`, or one output per key when the module returns a dict. It is run in onnxruntime on `check_input`
    (default: a seeded random batch in the example's value range, one row larger than the example, so a batch
    size baked into the graph is caught) and refused with ExportError when it differs from PyTorch by more than
    `tolerance`. `metadata` lands in the model's metadata_props. Nothing is written unless the check passed.
    """
    require_onnx()
    start = time.perf_counter()
    if dynamic_batch and example_input.shape[0] < 2:  # the dynamo exporter specialises a batch of 1
        example_input = example_input.expand(2, *example_input.shape[1:]).contiguous()
    check = _check_batch(example_input, dynamic_batch) if check_input is None else check_input
    with _eval_mode(module), torch.no_grad():
        names, is_dict = output_names(module(example_input))
        reference = to_numpy(module(check.to(example_input.device)))
    reasons = []
    for exporter, build in _EXPORTERS.items():
        try:
            with _eval_mode(module), torch.no_grad():
                model = build(module, example_input, names, dynamic_batch)
            diff = max_abs_diff(run_onnx(model, check, names, is_dict), reference)
        except Exception as exc:  # noqa: BLE001 - exporters raise anything; each becomes one reason
            reasons.append(f"{exporter}: {type(exc).__name__}: {_ANSI.sub('', one_line(exc, limit=160))[:120]}")
            continue
        if diff > tolerance:
            reasons.append(f"{exporter}: onnxruntime differs from PyTorch by {diff:.2g} > {tolerance:g}")
            continue
        model = _with_metadata(model, {"headstart.exporter": exporter, "headstart.max_abs_diff": f"{diff:.3g}",
                                       "headstart.torch": torch.__version__, OUTPUTS_KEY: json.dumps(names),
                                       DICT_OUTPUT_KEY: json.dumps(is_dict), **(metadata or {})})
        if path is not None:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, model)
        seconds = time.perf_counter() - start
        log.debug("exported %s with the %s exporter in %.1f s; max abs difference %.2g", type(module).__name__,
                  exporter, seconds, diff)
        return ExportResult(model=model, path=path, exporter=exporter, seconds=seconds, max_abs_diff=diff,
                            output_names=names, dict_output=is_dict)
    raise ExportError(f"{type(module).__name__} cannot be exported to ONNX ({'; '.join(reasons)})")


def run_onnx(model: bytes | str | Path, x: torch.Tensor, names: list[str], is_dict: bool) -> Features:
    """One onnxruntime CPU run of a model on a batch (for verification; engines keep their session)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: ORT's warnings are about graph details, not the user's data
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                   providers=["CPUExecutionProvider"])
    feed = {INPUT_NAME: np.ascontiguousarray(x.detach().float().cpu().numpy())}
    return from_list(session.run(names, feed), names, is_dict)


def _torchscript(module: nn.Module, example: torch.Tensor, names: list[str], dynamic: bool) -> bytes:
    buf = io.BytesIO()
    axes = {n: {0: "batch"} for n in (INPUT_NAME, *names)} if dynamic else None
    # torch < 2.5 has no `dynamo` argument (TorchScript was its only exporter); from 2.9 it defaults to True.
    choose = {"dynamo": False} if _HAS_DYNAMO else {}
    with _quiet(), _mha_fastpath_off():
        torch.onnx.export(module, (example,), buf, input_names=[INPUT_NAME], output_names=names,
                          dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True, **choose)
    return buf.getvalue()


def _dynamo(module: nn.Module, example: torch.Tensor, names: list[str], dynamic: bool) -> bytes:
    if not _HAS_DYNAMO:
        raise ExportError(f"torch {torch.__version__} has no dynamo exporter (torch >= 2.5 has)")
    if not _importable("onnxscript"):
        raise ExportError(f"onnxscript is not installed ({INSTALL_HINT})")
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    with _quiet():
        program = torch.onnx.export(module, (example,), None, dynamo=True, verbose=False, input_names=[INPUT_NAME],
                                    output_names=names, dynamic_shapes=shapes, external_data=False)
    return program.model_proto.SerializeToString()


_HAS_DYNAMO = "dynamo" in inspect.signature(torch.onnx.export).parameters

_EXPORTERS: dict[str, Callable[[nn.Module, torch.Tensor, list[str], bool], bytes]] = {
    "torchscript": _torchscript,
    "dynamo": _dynamo,
}


def _check_batch(example: torch.Tensor, dynamic: bool) -> torch.Tensor:
    """A seeded batch unlike the example (one row more when the batch is dynamic), in the example's range."""
    rows = example.shape[0] + (1 if dynamic else 0)
    gen = torch.Generator().manual_seed(0)
    if not example.is_floating_point():
        return torch.cat([example, example[:1]])[:rows]
    lo, hi = float(example.min()), float(example.max())
    x = torch.rand((rows, *example.shape[1:]), generator=gen) * (hi - lo) + lo
    return x.to(example.dtype)


def _with_metadata(model: bytes, metadata: dict[str, str]) -> bytes:
    import onnx

    proto = onnx.load_model_from_string(model)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(key), str(value)
    return proto.SerializeToString()


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode for the export and the reference, restoring the caller's mode after."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


@contextlib.contextmanager
def _mha_fastpath_off() -> Iterator[None]:
    """nn.MultiheadAttention's inference fast path (`_native_multi_head_attention`) has no ONNX symbolic; the
    TorchScript exporter fails on torchvision's ViT unless it takes the plain path (same numbers)."""
    mha = getattr(torch.backends, "mha", None)  # torch >= 2.2
    if mha is None:
        yield
        return
    enabled = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(enabled)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Exporter warnings (TorchScript's deprecation, TracerWarnings on shape asserts) are not the user's business:
    the verification is the check that counts, and a failure becomes one line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
