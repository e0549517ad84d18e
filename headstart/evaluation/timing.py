"""Honest timers: wall time that waits for the GPU, and peak memory, shared by every stage.

torch is imported only when a CUDA device is passed, so the CPU-only evaluation path never pays for it.
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Any


def _cuda_device(device: Any) -> Any | None:
    """The torch.device for `device` when it names CUDA, else None (no torch import for CPU or None)."""
    if device is None or not str(device).startswith("cuda"):
        return None
    import torch

    return torch.device(device)


class Timer:
    """Context manager measuring wall seconds with `perf_counter`; synchronises a CUDA device on enter and exit.

    Usage: `with Timer(device=device) as timer: model(batch)`, then read `timer.seconds`. Without the
    synchronisation a GPU timing would measure only the kernel launches.
    """

    def __init__(self, *, device: Any = None) -> None:
        self.device = device
        self.seconds = 0.0  # elapsed wall time, set on exit
        self._start = 0.0

    def __enter__(self) -> Timer:
        self._synchronize()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._synchronize()
        self.seconds = time.perf_counter() - self._start

    def _synchronize(self) -> None:
        cuda = _cuda_device(self.device)
        if cuda is not None:
            import torch

            torch.cuda.synchronize(cuda)


def peak_memory_mb(device: Any = None) -> float:
    """Peak memory in MiB: CUDA `max_memory_allocated` for a CUDA device, else the process's peak RSS.

    The CPU figure is the whole process's high-water mark since start (it cannot be reset), so it is an upper
    bound for the stage that reports it.
    """
    cuda = _cuda_device(device)
    if cuda is not None:
        import torch

        return torch.cuda.max_memory_allocated(cuda) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def reset_peak_memory(device: Any = None) -> None:
    """Start a new CUDA peak-memory window; a no-op on CPU, where the OS keeps one peak per process."""
    cuda = _cuda_device(device)
    if cuda is not None:
        import torch

        torch.cuda.reset_peak_memory_stats(cuda)


def describe_device(device: Any = None) -> str:
    """A short device label for records, e.g. `cpu` or `cuda:0 (NVIDIA H100 80GB HBM3)`."""
    cuda = _cuda_device(device)
    if cuda is None:
        return str(device or "cpu")
    import torch

    index = cuda.index if cuda.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
