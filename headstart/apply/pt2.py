"""`.pt2` export (torch.export): saved, re-loaded and checked against PyTorch before it is published.

ONNX goes through the project's one exporter, `headstart.engines.export.export_onnx` (verified in onnxruntime);
this is its torch.export counterpart, with the same rule: a program whose re-loaded outputs differ from the
module's by more than the tolerance is refused (ExportError) and nothing is written.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from headstart.errors import DataError, ExportError, one_line
from headstart.io import replace_durably


@dataclass
class Pt2Export:
    """A verified .pt2 program and how close it came to PyTorch."""

    path: Path
    exporter: str  # "torch.export"
    max_abs_diff: float  # the re-loaded program vs the module on the check batch
    seconds: float  # export + save + verification


def export_pt2(module: nn.Module, example: torch.Tensor, path: str | Path, *, tolerance: float,
               check_input: torch.Tensor) -> Pt2Export:
    """`torch.export` with a dynamic batch axis; saved beside `path`, re-loaded, checked, then renamed into place."""
    start = time.perf_counter()
    path = Path(path)
    try:
        with quiet(), torch.no_grad():
            program = torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
            reference = module(check_input)
    except Exception as exc:  # noqa: BLE001 - torch.export refuses models in many ways; one line each
        raise ExportError(f"torch.export cannot export the model ({type(exc).__name__}: "
                          f"{one_line(exc, limit=140)}); try -o MODEL.onnx") from None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp-", suffix=".pt2", dir=path.parent)  # torch wants .pt2
    os.close(fd)
    try:
        torch.export.save(program, tmp)
        with torch.no_grad():
            diff = float((load_pt2(Path(tmp))(check_input) - reference).abs().max())
        if not diff <= tolerance:
            raise ExportError(f"the re-loaded .pt2 program differs from PyTorch by {diff:.2g} > {tolerance:g}; "
                              "nothing was written")
        replace_durably(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return Pt2Export(path, "torch.export", diff, time.perf_counter() - start)


def load_pt2(path: Path) -> nn.Module:
    """The program of a .pt2 file as a callable module; DataError (one line) when the file is not one."""
    try:
        with quiet():
            return torch.export.load(str(path)).module()
    except Exception as exc:  # noqa: BLE001 - a damaged archive fails in many ways
        raise DataError(f"{path} cannot be loaded by torch.export ({one_line(exc, limit=100)}); it is damaged; "
                        "export the run again") from None


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """torch.export's warnings are about its internals, not the user's model: the check is what counts."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
