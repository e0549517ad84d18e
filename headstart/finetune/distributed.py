"""The one seam where data-parallel training plugs in (torchvision's `init_distributed_mode`, as an object).

`run_finetune` asks a `Replica` for its samplers, wraps the model through it, gathers each evaluation through
it and writes files only when `is_main`. A plain process gets the one-process replica, for which every method
is an identity. Under `torchrun --nproc_per_node=N -m headstart finetune ...` the replica joins the process group
(set up once, in `headstart.distributed`), shards train/val/test like DistributedSampler, wraps the model in
DistributedDataParallel and gathers per-sample outputs so that everything computed from them (metrics, early
stopping, the record) is the same on every rank and equals a one-process evaluation.
"""

from __future__ import annotations

import os
from dataclasses import asdict

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from headstart import distributed
from headstart.distributed import DistInfo
from headstart.errors import ConfigError, one_line
from headstart.finetune.data import EpochSampler


class Replica(DistInfo):
    """This process's place in a (possibly one-process) training job: a `DistInfo` (rank, world size, local
    rank, `is_main`, `distributed`) plus the training-side operations, so the job layout is described once."""

    @classmethod
    def from_env(cls) -> "Replica":
        """Join the torchrun job when there is one (gloo on CPU, nccl on CUDA); otherwise a single process.

        Ranks other than 0 log only warnings from here on, so a job prints one progress stream.
        """
        try:
            info = distributed.init_distributed(quiet_others=True)
        except ValueError as exc:  # a partial torchrun environment, e.g. WORLD_SIZE without RANK or MASTER_ADDR
            reason = one_line(exc)
            raise ConfigError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')} is set but torch.distributed cannot start "
                              f"({reason}); launch with torchrun --nproc_per_node=N -m headstart finetune ...") from None
        return cls(**asdict(info))

    def device(self, requested: torch.device) -> torch.device:
        """The device this rank trains on: under torchrun, the GPU that LOCAL_RANK picked (one GPU per rank)."""
        if not self.distributed:
            return requested
        if dist.get_backend() == "nccl" and requested.type != "cuda":
            raise ConfigError(f"--device {requested} under torchrun on a CUDA machine is not supported (the job "
                              "uses NCCL); pass --device auto, or hide the GPUs with CUDA_VISIBLE_DEVICES=''")
        if requested.type != "cuda":
            return requested
        mine = torch.device("cuda", torch.cuda.current_device())
        if requested.index is not None and requested != mine:
            raise ConfigError(f"--device {requested} under torchrun: rank {self.rank} uses {mine} (LOCAL_RANK="
                              f"{self.local_rank}); pass --device auto or cuda and let torchrun place the ranks")
        return mine

    def train_sampler(self, n: int, *, seed: int) -> EpochSampler:
        """Each rank takes a strided shard of the same (seed, epoch) permutation."""
        return EpochSampler(n, seed=seed, shuffle=True, num_replicas=self.world_size, rank=self.rank)

    def eval_sampler(self, n: int, *, seed: int) -> EpochSampler:
        """An in-order strided shard; `gather_split` undoes the sharding and the padding."""
        return EpochSampler(n, seed=seed, shuffle=False, num_replicas=self.world_size, rank=self.rank)

    def wrap(self, model: nn.Module, *, device: torch.device) -> nn.Module:
        """The module the train loop steps (DistributedDataParallel under torchrun).

        DDP registers only parameters that require grad, so frozen layers (every freeze mode) are neither
        all-reduced nor reported as unused: `find_unused_parameters` stays off. Buffers (BatchNorm statistics)
        are broadcast from rank 0 before each forward, as in torchvision's reference.
        """
        if not self.distributed:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None)

    def sync_buffers(self, model: nn.Module) -> None:
        """Copy rank 0's buffers to every rank before an evaluation.

        Parameters are equal on every rank after each DDP step, but each rank's last train forward updated its
        own BatchNorm running statistics; rank 0's are the ones its checkpoint holds.
        """
        if self.distributed:
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)

    def gather_split(self, part: dict[str, np.ndarray], *, n: int) -> dict[str, np.ndarray]:
        """Every rank's per-sample arrays merged, one row per sample position 0..n-1, in position order.

        The padding an `EpochSampler` shard adds repeats positions; the first copy is kept. Every rank gets
        the same arrays, so whatever is computed from them (metrics, early stopping) agrees across ranks.
        """
        parts = distributed.all_gather_object(part) if self.distributed else [part]
        merged = {key: np.concatenate([p[key] for p in parts]) for key in part}
        positions, first = np.unique(merged["position"], return_index=True)
        if not np.array_equal(positions, np.arange(n)):
            raise RuntimeError(f"evaluation covered {len(positions)} of {n} sample positions; this is a bug")
        return {key: values[first] for key, values in merged.items()}

    def combine_train(self, stats: dict) -> dict:
        """One epoch's train statistics over all ranks: image-weighted loss and accuracy, images summed, and
        the slowest rank's seconds (DDP steps in lock-step, so that is the epoch's wall time)."""
        if not self.distributed:
            return stats
        every = distributed.all_gather_object(stats)
        images = sum(s["images"] for s in every)
        return {"loss": sum(s["loss"] * s["images"] for s in every) / max(images, 1),
                "accuracy": sum(s["accuracy"] * s["images"] for s in every) / max(images, 1),
                "images": images, "seconds": max(s["seconds"] for s in every)}

    def any_rank(self, flag: torch.Tensor) -> bool:
        """True when `flag` (a 0/1 tensor on the training device) is set on any rank; one scalar all-reduce."""
        if self.distributed:
            flag = flag.clone()
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag)

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank (decisions such as early stopping are then identical by construction)."""
        return distributed.broadcast_object(obj) if self.distributed else obj

    def require_same(self, request: dict) -> None:
        """Refuse, with one line naming the differing keys, ranks that were started with different arguments."""
        if self.distributed:
            distributed.require_same_request(request)

    def barrier(self) -> None:
        if self.distributed:
            distributed.barrier()

    def close(self) -> None:
        """Leave the process group after a successful run (a failed rank just exits; torchrun stops the rest)."""
        if self.distributed:
            distributed.barrier()
            distributed.cleanup()
