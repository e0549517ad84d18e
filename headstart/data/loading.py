"""Batches of decoded samples, shared by extraction and fine-tuning: one DataLoader recipe, one failure rule.

Workers never raise. A DataLoader re-raises a worker's exception with the worker's traceback in its message,
which would break the one-line error contract, so a worker turns any decode failure into the file's one-line
error and returns it with the batch; the main process then applies the bad-image policy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch.utils.data import DataLoader, Dataset, Sampler

from headstart.data.types import Sample
from headstart.errors import HeadstartError

T = TypeVar("T")

PREFETCH_BATCHES = 4  # per worker: enough to hide an uneven decode time, small enough to bound host memory


def decode_or_error(sample: Sample, decode: Callable[[], T]) -> tuple[T | None, str]:
    """`(decode(), "")`, or `(None, one line naming the file)` when decoding fails in any way."""
    try:
        return decode(), ""
    except HeadstartError as exc:  # already one line naming the file
        return None, str(exc) or f"{sample.path or sample.id}: cannot decode image ({type(exc).__name__})"
    except Exception as exc:  # noqa: BLE001 - a decoder bug or exotic file must still name the file, not kill the run
        return None, f"{sample.path or sample.id}: cannot decode image ({type(exc).__name__}: {exc})"


def make_loader(dataset: Dataset, *, batch_size: int, workers: int, pin_memory: bool, sampler: Sampler | None = None,
                collate_fn: Callable[[list], Any] | None = None, drop_last: bool = False,
                persistent: bool = False) -> DataLoader:
    """Batches in the sampler's order, or in row order without one (never shuffled here).

    `persistent` keeps the workers across passes (epochs), which pays when a loader is iterated many times.
    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        collate_fn=collate_fn,
        drop_last=drop_last,
        persistent_workers=persistent and workers > 0,
        prefetch_factor=PREFETCH_BATCHES if workers > 0 else None,
    )
