"""torch.distributed set-up in one place (torchvision reference style), so the rest of headstart asks questions
("am I rank 0?", "wait for everyone") instead of touching process groups.

headstart never launches processes itself: `torchrun --nproc_per_node=N -m headstart ...` starts one copy of the
CLI per rank and sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT. A plain `headstart ...` has
none of these, and every helper here then degrades to the single-process answer without creating a group.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from headstart import errors
from headstart.errors import ConfigError, HeadstartError

log = logging.getLogger(__name__)

# Ranks wait for each other while others decode and run backbones; a shard of a large data set can take hours on
# a slow rank, so the collective timeout is generous. A dead rank is detected by torchrun, which stops the rest.
TIMEOUT = _dt.timedelta(hours=6)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job: the one description extraction and fine-tuning share.

    Fine-tuning's `Replica` is this same record with the training-side operations added (samplers, DDP).
    """

    rank: int = 0  # global rank, 0 .. world_size-1; rank 0 writes files and logs
    world_size: int = 1  # processes in the job (all nodes)
    local_rank: int = 0  # rank on this node; picks the GPU (see local_gpu)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when several processes share the work (a process group exists or is about to)."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer; launch with torchrun") from None


def local_gpu(local_rank: int | None = None) -> torch.device:
    """The GPU a rank uses: LOCAL_RANK (from the environment when not given) modulo the visible GPUs.

    One rule for `--device auto` and for the process group's device, so both always name the same GPU.
    """
    rank = _env_int("LOCAL_RANK", 0) if local_rank is None else local_rank
    return torch.device("cuda", rank % torch.cuda.device_count())


def env_info() -> DistInfo:
    """The job layout torchrun advertises in the environment (no process group is created)."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} WORLD_SIZE={world} is inconsistent; expected 0 <= RANK < WORLD_SIZE")
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def init_distributed(*, quiet_others: bool = True) -> DistInfo:
    """Join the torchrun job if there is one; idempotent, and a no-op for a single process.

    Backend nccl when CUDA is available (one GPU per rank, chosen by LOCAL_RANK), else gloo. With
    `quiet_others`, ranks other than 0 log only warnings, so a job prints one progress stream.
    """
    info = env_info()
    if not info.distributed:
        return info
    if dist.is_available() and dist.is_initialized():
        return info
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; run a single process or install a full build")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_gpu(info.local_rank))
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend=backend, timeout=TIMEOUT)
    if quiet_others and not info.is_main:
        logging.getLogger("headstart").setLevel(logging.WARNING)
    log.info("joined a %d-process job (backend %s)", info.world_size, backend)
    return info


def info() -> DistInfo:
    """The current layout: the live process group when there is one, else a single process."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=_env_int("LOCAL_RANK", 0))
    return DistInfo()


def is_main() -> bool:
    """True on rank 0 and in a single process: the one process that writes files and prints summaries."""
    return info().is_main


def barrier() -> None:
    """Wait until every rank gets here (no-op for a single process)."""
    if info().distributed:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank (a one-element list for a single process)."""
    if not info().distributed:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, *, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank (`obj` is ignored elsewhere)."""
    if not info().distributed:
        return obj
    box = [obj if dist.get_rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup() -> None:
    """Leave the process group (safe to call when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def same_outcome() -> Iterator[None]:
    """Run a step on every rank and make them agree on how it ended: if any rank fails, every rank raises.

    A rank that fails re-raises its own error; the others raise the first failure's error class (so the CLI exit
    code is the same everywhere) with the failing rank named. Without this a failed rank leaves the others
    waiting at the next collective until the timeout. Single process: a plain pass-through.
    """
    if not info().distributed:
        yield
        return
    try:
        yield
    except Exception as exc:
        all_gather_object((type(exc).__name__, str(exc)))
        raise
    failures = [(rank, f) for rank, f in enumerate(all_gather_object(None)) if f is not None]
    if failures:
        rank, (kind, message) = failures[0]
        cls = getattr(errors, kind, None)
        if not (isinstance(cls, type) and issubclass(cls, HeadstartError)):
            raise RuntimeError(f"rank {rank} failed with {kind}: {message}")
        raise cls(f"rank {rank}: {message}")


def mismatched_ranks(requests: list[dict]) -> str | None:
    """A one-line description of the first rank whose request differs from rank 0's, or None when all agree.

    Kept free of collectives so it can be tested with made-up gathered values.
    """
    first = requests[0]
    for rank, other in enumerate(requests[1:], start=1):
        if other != first:
            keys = sorted(k for k in set(first) | set(other) if first.get(k) != other.get(k))
            shown = "; ".join(
                f"{k}: {_short(other.get(k))} vs rank 0's {_short(first.get(k))}" for k in keys[:3]
            ) + ("; ..." if len(keys) > 3 else "")
            return f"rank {rank} was started with different arguments ({shown}); start every rank with the same command"
    return None


def require_same_request(request: dict) -> None:
    """Refuse (on every rank, with the same message) a job whose ranks were started with different arguments."""
    problem = mismatched_ranks(all_gather_object(request))
    if problem:
        raise ConfigError(problem)


def _short(value: Any, width: int = 40) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 3] + "..."
