"""The fine-tune input pipeline: one split of a data set as uint8 tensors, decoded and augmented in workers.

Shuffling and augmentation are driven by (seed, epoch, sample) alone, never by a worker's RNG stream: the
sampler hands each index its own augmentation seed. So the batches of epoch e are the same whatever the worker
count, with persistent workers, and after `--resume` (which restarts the workers). The sampler also takes
`num_replicas`/`rank` like torch's DistributedSampler, so a DDP run shards the same permutation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data import Dataset as TorchDataset

from headstart.backbones.types import Preprocessing
from headstart.data import loading
from headstart.data.augment import get_preset
from headstart.data.types import ImageSource, Sample
from headstart.errors import DataError
from headstart.extract.preprocess import augmented_tensor, to_uint8_tensor
from headstart.finetune.config import AugmentConfig


class SplitImages(TorchDataset):
    """Samples of one split -> (uint8 image, label, position, error).

    The label is the sample's class index, or its row of `targets` where given: a multi-label run's (L,)
    float targets, NaN where masked (`finetune.labels`).

    Items are fetched with `(position, augment_seed)` keys from `EpochSampler`; a seed of -1 means "no
    augmentation". Workers never raise (see `headstart.data.loading`): a bad image comes back as a zero image
    plus its one-line error, and the main process stops with it.
    """

    def __init__(self, source: ImageSource, samples: list[Sample], prep: Preprocessing,
                 *, augment: AugmentConfig | None = None, targets: np.ndarray | None = None):
        self.source = source
        self.targets = targets
        self.samples = samples
        self.prep = prep
        self.preset = get_preset(augment.preset) if augment is not None and augment.enabled else None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int | torch.Tensor, int, str]:
        position, seed = key
        sample = self.samples[position]

        def decode() -> torch.Tensor:
            img = self.source.load(sample, min_size=self.prep.resize_size)
            if self.preset is not None and seed >= 0:  # the view and its plain crop in one warp, as extraction's
                return augmented_tensor(img, self.prep, self.preset, torch.Generator().manual_seed(seed))
            return to_uint8_tensor(img, self.prep)

        image, error = loading.decode_or_error(sample, decode)
        if image is None:  # a placeholder keeps the batch stackable; the error stops the run in the main process
            image = torch.zeros(self.prep.channels, self.prep.input_size, self.prep.input_size, dtype=torch.uint8)
        label = sample.label if self.targets is None else torch.from_numpy(self.targets[position])
        return image, label, position, error


class EpochSampler(Sampler):
    """Yields `(position, augment_seed)`; the order and seeds depend only on (seed, epoch).

    `shuffle=False` gives positions in order with seed -1 (val/test). With `num_replicas > 1` each rank takes a
    strided shard of the same permutation, padded to equal length, exactly as DistributedSampler does.
    """

    def __init__(self, n: int, *, seed: int, shuffle: bool, num_replicas: int = 1, rank: int = 0):
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self.per_rank = math.ceil(n / num_replicas) if num_replicas > 1 else n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if not self.shuffle:
            order = list(range(self.n))
            seeds = [-1] * self.n
        else:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
            seeds = torch.randint(0, 2**31 - 1, (self.n,), generator=g).tolist()
        if self.num_replicas > 1:
            total = self.per_rank * self.num_replicas
            wraps = math.ceil(total / max(self.n, 1))  # pad by wrapping around, as DistributedSampler does
            order, seeds = (order * wraps)[:total], (seeds * wraps)[:total]
            order, seeds = order[self.rank::self.num_replicas], seeds[self.rank::self.num_replicas]
        return iter(zip(order, seeds))


def make_loader(dataset: SplitImages, sampler: EpochSampler, *, batch_size: int, workers: int,
                pin_memory: bool, drop_last: bool = False) -> DataLoader:
    """Batches of one split. Persistent workers avoid re-forking every epoch (costly with large sources)."""
    return loading.make_loader(dataset, sampler=sampler, batch_size=batch_size, workers=workers,
                               pin_memory=pin_memory, drop_last=drop_last, persistent=True)


def raise_bad_images(errors: list[str]) -> None:
    """The `fail` bad-image policy (the same default as extract): stop with the first file's error."""
    bad = [e for e in errors if e]
    if bad:
        more = f" (and {len(bad) - 1} more in this batch)" if len(bad) > 1 else ""
        raise DataError(f"{bad[0]}{more}; fix or remove the file and rerun (`--resume` continues from the last epoch)")
