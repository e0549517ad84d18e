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


def onnx_threads() -> int:
    """onnxruntime's intra-op threads: torch's count (all physical cores), whatever the decode workers.

    Decoding a 224-px JPEG costs about 2 ms of CPU against about 40 ms for a ResNet18 forward, so the workers
    need a small share of one core, and leaving them a whole core starves the engine. Measured on this 2-core
    machine, quiet (load average 1.4-1.8), `run_extract` of 640 real 224-px JPEGs with resnet18, batch 64, one
    decode worker, three interleaved repeats: 48.9 images/s in the loop with 2 intra-op threads against 26.7 with
    1. (An earlier measurement under heavy load, load average 5-9, had favoured one thread: with other jobs on the
    cores, a thread that shares its core is descheduled mid-op and its siblings wait at the op's barrier.)
    Inter-op stays 1 (sequential execution: a backbone is a chain of ops).
    """
    return max(1, torch.get_num_threads())


def spinning_wanted() -> bool:
    """Spin only when the user asked for OpenMP's ACTIVE policy; the CLI sets PASSIVE (see cli.main)."""
    return os.environ.get(SPIN_ENV, "").strip().upper() == "ACTIVE"
