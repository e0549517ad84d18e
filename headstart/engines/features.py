"""What an engine returns: the module's output structure, as float32 numpy arrays.

A backbone module returns one (B, D) tensor today; with layer/pool taps it may return a dict of them, one per
feature set. Both engines hand back the same structure, so the extract loop never asks which engine ran: one
array for a tensor output, a dict of arrays (in the module's key order) for a dict output.
"""

from __future__ import annotations

import numpy as np
import torch

from headstart.errors import ExportError

Features = np.ndarray | dict[str, np.ndarray]

TENSOR_OUTPUT = "features"  # the ONNX output name of a module that returns one tensor


def output_names(outputs: object) -> tuple[list[str], bool]:
    """(ONNX output names, is_dict) for what a module returned; anything but a tensor or a str-keyed dict of
    tensors is refused, since neither exporter nor the cache can name its parts."""
    if isinstance(outputs, torch.Tensor):
        return [TENSOR_OUTPUT], False
    if isinstance(outputs, dict) and outputs and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in outputs.items()):
        return list(outputs), True
    raise ExportError(f"the module returned {type(outputs).__name__}; expected a tensor or a dict of named tensors")


def to_numpy(outputs: torch.Tensor | dict[str, torch.Tensor]) -> Features:
    """float32 numpy copies on the CPU (`.cpu()` synchronises a CUDA device, so timings stay honest)."""
    if isinstance(outputs, dict):
        return {k: v.float().cpu().numpy() for k, v in outputs.items()}
    return outputs.float().cpu().numpy()


def from_list(arrays: list[np.ndarray], names: list[str], is_dict: bool) -> Features:
    """onnxruntime's output list back into the module's structure."""
    return dict(zip(names, arrays)) if is_dict else arrays[0]


def max_abs_diff(a: Features, b: Features) -> float:
    """The largest absolute difference over every output (inf when shapes or keys differ, or a value is NaN)."""
    pairs = [(a[k], b.get(k)) for k in a] if isinstance(a, dict) and isinstance(b, dict) else [(a, b)]
    if isinstance(a, dict) != isinstance(b, dict) or (isinstance(a, dict) and set(a) != set(b)):
        return float("inf")
    worst = 0.0
    for x, y in pairs:
        if y is None or np.shape(x) != np.shape(y):
            return float("inf")
        if np.size(x):
            d = float(np.max(np.abs(np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64))))
            worst = max(worst, d if np.isfinite(d) else float("inf"))
    return worst


def feature_scale(features: Features) -> float:
    """The largest absolute finite value over every output (0.0 when there is none)."""
    arrays = features.values() if isinstance(features, dict) else [features]
    finite = [np.abs(a[np.isfinite(a)]).max() for a in arrays if np.isfinite(a).any()]
    return float(max(finite, default=0.0))


def first_rows(features: Features, n: int) -> Features:
    """The first `n` rows of every output."""
    if isinstance(features, dict):
        return {k: v[:n] for k, v in features.items()}
    return features[:n]
