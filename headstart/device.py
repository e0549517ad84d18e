"""Device and precision resolution shared by extraction and fine-tuning.

`auto` means: CUDA when present (one GPU per rank under torchrun, chosen by LOCAL_RANK), else CPU. Autocast
is used only where it was measured to help: fp16 on CUDA; on CPU fp32 unless bf16 is asked for explicitly
(on AVX2-only CPUs such as this project's CI machine bf16 autocast is slower than fp32).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from headstart.distributed import local_gpu
from headstart.errors import ConfigError
from headstart.precision import HEAD_PRECISIONS, PRECISIONS


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn `auto|cpu|cuda|cuda:i` into a torch.device, refusing CUDA requests on machines without it."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return local_gpu()
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"--device {spec!r} is not a device; expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {spec} was requested but CUDA is not available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present; use cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
    elif device.type != "cpu":
        raise ConfigError(f"--device {spec!r} is not supported; expected auto, cpu, cuda or cuda:N")
    return device


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision request on a device, or None for plain fp32."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r} is not valid; expected one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    if precision == "fp32":
        return None
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("--precision fp16 is CUDA-only; use --precision bf16 or fp32 on the CPU")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bf16 in hardware: a CUDA GPU with bf16, or a CPU with AVX512-BF16 or AMX (where
    bf16 autocast ran the MLP sweep's matmuls 2.7x faster; on AVX2-only CPUs it is slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so each is looked up defensively
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def head_precision(precision: str, device: torch.device) -> str:
    """`headstart heads --precision` -> what the torch heads' training steps run in, "bf16" or "fp32"; auto is bf16
    where the device has it natively (`native_bf16`), else fp32."""
    if precision not in HEAD_PRECISIONS:
        raise ConfigError(f"--precision {precision!r} is not valid for heads; expected one of "
                          f"{', '.join(HEAD_PRECISIONS)}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """An autocast context, or a no-op one, so callers never branch on precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def cudnn_benchmark(device: torch.device) -> Iterator[None]:
    """On CUDA, let cuDNN time its kernels and keep the fastest (worth it when every batch has one shape), and
    give the caller's setting back afterwards: the flag is process-wide, and a library must not leave it changed."""
    if device.type != "cuda":
        yield
        return
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def precision_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]


def decode_threads(device: torch.device) -> int:
    """Threads that decode a batch in the main process, between forwards, when extraction runs on the CPU with
    its default workers: every core (PIL releases the GIL while it decodes and resizes). On CUDA, 0: worker
    processes decode while the GPU computes."""
    if device.type == "cuda":
        return 0
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers(device: torch.device) -> int:
    """Decode workers: on a GPU, all but one core (decode is the bottleneck); on CPU, one core decodes
    while the rest run the network, since both compete for the same cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device.type == "cuda":
        return max(1, min(cores - 1, 16))
    return 1 if cores >= 2 else 0
