"""The one seam where data-parallel training plugs in (torchvision's `init_distributed_mode`, as an object).

`run_finetune` asks a `Replica` for its train sampler, wraps the model through it and writes files only when
`is_main`. The single-process replica below makes these identities. A torchrun replica fills in the same
methods (process group, DistributedDataParallel) and adds one more: an all-gather of `evaluate_split`'s outputs,
de-duplicated by sample position (which every batch carries), so metrics equal a one-process evaluation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from torch import nn

from headstart.errors import ConfigError
from headstart.finetune.data import EpochSampler


@dataclass(frozen=True)
class Replica:
    """This process's place in a (possibly one-process) training job."""

    rank: int = 0  # global rank; 0 writes checkpoints, records and logs
    world_size: int = 1  # number of processes that share each epoch's batches

    @classmethod
    def from_env(cls) -> "Replica":
        """Read torchrun's WORLD_SIZE/RANK; refuse multi-process launches until DDP fine-tuning lands."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size > 1:
            raise ConfigError(
                f"finetune was launched with WORLD_SIZE={world_size}, but distributed fine-tuning is not available "
                "yet; run it as one process (python -m headstart finetune ...)"
            )
        return cls(rank=int(os.environ.get("RANK", "0")), world_size=world_size)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def train_sampler(self, n: int, *, seed: int) -> EpochSampler:
        """Each rank takes a strided shard of the same (seed, epoch) permutation."""
        return EpochSampler(n, seed=seed, shuffle=True, num_replicas=self.world_size, rank=self.rank)

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the train loop steps (DistributedDataParallel under torchrun)."""
        return model
