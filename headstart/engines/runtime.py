"""The two engines that run a frozen backbone: PyTorch eager, and onnxruntime's CPU provider.

Both take the normalised float batch that extraction builds and return the module's output structure as
float32 numpy arrays (see `features`), so the extract loop calls `engine(x)` whatever ran it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from headstart.device import autocast, precision_name
from headstart.engines.export import DICT_OUTPUT_KEY, INPUT_NAME, OUTPUTS_KEY
from headstart.engines.features import Features, from_list, to_numpy

log = logging.getLogger(__name__)

# ORT's intra-op pool, measured on this 2-core machine with one decode worker running beside it (resnet18,
# batch 64, 224 px; benchmarks/engine_threads.py): see `onnx_threads`.
SPIN_ENV = "OMP_WAIT_POLICY"  # the CLI sets PASSIVE; onnxruntime's own pool follows the same wish


class TorchEngine:
    """PyTorch eager, as extraction has always run: eval, no grad, channels_last, the precision's autocast."""

    name = "torch"

    def __init__(self, module: nn.Module, device: torch.device, *, amp_dtype: torch.dtype | None = None):
        self.device = device
        self.amp_dtype = amp_dtype  # None: fp32; fp16 on CUDA by default (see headstart.device)
        self.module = module.eval().requires_grad_(False).to(device, memory_format=torch.channels_last)

    @property
    def tag(self) -> str:
        return f"torch {torch.__version__}"

    def __call__(self, x: torch.Tensor) -> Features:
        with torch.inference_mode(), autocast(self.device, self.amp_dtype):
            return to_numpy(self.module(x.to(self.device, non_blocking=True)))

    def describe(self) -> dict:
        """For the feature set's attributes."""
        return {"engine": self.name, "engine_version": torch.__version__, "precision": precision_name(self.amp_dtype)}


class OnnxEngine:
    """onnxruntime's CPU provider at full graph optimisation on an exported, verified graph (fp32)."""

    name = "onnxruntime"

    def __init__(self, model: bytes | str | Path, *, threads: int, spinning: bool = False):
        import onnxruntime as ort

        self.threads = threads
        self.spinning = spinning
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # a backbone is a chain: inter-op pools idle
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning pool threads hold a core between ops; beside decode workers that starves them (OMP_WAIT_POLICY).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        options.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                            providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.output_names = json.loads(meta.get(OUTPUTS_KEY, "null")) or [o.name for o in self.session.get_outputs()]
        self.dict_output = json.loads(meta.get(DICT_OUTPUT_KEY, "false"))
        self.version = ort.__version__

    @property
    def tag(self) -> str:
        return f"onnxruntime {self.version}"

    def __call__(self, x: torch.Tensor) -> Features:
        # ORT wants a C-contiguous NCHW array; extraction's batch is channels_last, so this is one copy.
        feed = {INPUT_NAME: np.ascontiguousarray(x.detach().float().cpu().numpy())}
        return from_list(self.session.run(self.output_names, feed), self.output_names, self.dict_output)

    def describe(self) -> dict:
        return {"engine": self.name, "engine_version": self.version, "precision": "fp32",
                "intra_op_threads": self.threads}


def onnx_threads(*, workers: int, cores: int | None = None) -> int:
    """onnxruntime's intra-op threads: what torch uses today (its intra-op count, all physical cores).

    Measured on this 2-core machine, resnet18 at 224 px, batch 64, with one decode worker beside it: 2 threads
    ran faster than 1 even with the worker competing, so decode workers do not take threads away (they mostly
    wait on a full prefetch queue while the network runs). `workers` is kept in the signature for the record.
    """
    del workers, cores
    return max(1, torch.get_num_threads())


def spinning_wanted() -> bool:
    """Spin only when the user asked for OpenMP's ACTIVE policy; the CLI sets PASSIVE (see cli.main)."""
    return os.environ.get(SPIN_ENV, "").strip().upper() == "ACTIVE"
