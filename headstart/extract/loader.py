"""The decode side of extraction: each image is decoded once and cropped for every input geometry.

Workers never raise (see `headstart.data.loading`): a bad image comes back flagged with its error message, and
the main process applies `--on-bad-image`. In `--decode device` mode workers ship the bytes of plain JPEGs
instead of pixels (`device_decode.jpeg_item`), batched by `device_decode.collate_mixed`; the main process
decodes them on the device and falls back to this module's PIL path (`DecodedImages.decode_row`) for a file the
device decoder refuses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from headstart.backbones.types import Preprocessing
from headstart.data import imagemeta, loading
from headstart.data.types import ImageSource, Sample
from headstart.device import decode_threads, default_workers
from headstart.extract.device_decode import collate_mixed, jpeg_item
from headstart.extract.preprocess import crop_tensor, plain_frame, stack_channels_last, to_uint8_tensor, view_base
from headstart.extract.views import ViewPlan, stack_views, view_key


def geometry_key(prep: Preprocessing) -> str:
    """Backbones that share a geometry share one decoded tensor; normalisation stays per backbone. The channel
    count is part of it: a grayscale (torchxrayvision) crop and an RGB crop of one size are different tensors."""
    key = f"{prep.input_size}-{prep.resize_size}-{prep.interpolation}-{prep.channels}"
    return key if prep.crop == "center" else f"{key}-{prep.crop}"


class DecodedImages(Dataset):
    """Rows of a data set, decoded once and cropped for each distinct backbone geometry."""

    def __init__(self, source: ImageSource, samples: list[Sample], rows: np.ndarray, preps: list[Preprocessing], *,
                 decode: str = "cpu", decoded: dict[int, dict] | None = None, views: ViewPlan | None = None):
        self.source = source
        # extract --views/--tta: each row's augmented or test-time views, derived from the same decode
        self.views = views if views is not None and views.kinds else None
        # Rows already decoded (the engine check's probe, see extract.features.probe_images): never decoded twice,
        # unless views are wanted (the probe decoded no views)
        self.decoded = (decoded or {}) if self.views is None else {}
        self.decode = decode  # cpu: PIL decodes everything here; device: plain JPEGs leave as bytes
        self.samples = samples
        self.rows = np.asarray(rows, dtype=np.int64)
        self.geometries = {geometry_key(p): p for p in preps}
        # Draft-decode large JPEGs no smaller than the largest resize any backbone needs.
        self.min_size = max(p.resize_size for p in preps)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        row = int(self.rows[i])
        if row in self.decoded:
            return self.decoded[row]
        if self.decode == "device":
            item = jpeg_item(self.source, self.samples[row], row)
            if item is not None:
                return item
        return self.decode_row(row)

    def decode_row(self, row: int) -> dict:
        """The PIL path: decode one row and crop it for every geometry; a bad image comes back flagged.

        `meta` is the row's `ImageMeta` from the same decode, as `imagemeta.to_text` ("" for a bad image).
        """
        sample = self.samples[row]
        decoded, error = loading.decode_or_error(sample, lambda: self._crops(sample))
        if decoded is None:  # placeholders keep the batch stackable; the row is marked not ok
            decoded = ({key: torch.zeros(p.channels, p.input_size, p.input_size, dtype=torch.uint8)
                        for key, p in self.geometries.items()}, "")
            if self.views is not None:  # no views for a bad image: its view rows stay invalid
                decoded[0].update({view_key(key, kind): [] for key in self.geometries for kind in self.views.kinds})
        crops, meta = decoded
        return {"row": row, "ok": not error, "error": error, "meta": meta, **crops}

    def _crops(self, sample: Sample) -> tuple[dict, str]:
        img, meta = self.source.load_with_meta(sample, min_size=self.min_size)
        if self.views is None:
            return {key: to_uint8_tensor(img, prep) for key, prep in self.geometries.items()}, imagemeta.to_text(meta)
        bases = {key: view_base(img, prep) for key, prep in self.geometries.items()}
        crops = {key: to_uint8_tensor(bases[key], prep) for key, prep in self.geometries.items()}
        crops.update(self._views(bases, sample))
        return crops, imagemeta.to_text(meta)

    def _views(self, bases: dict, sample: Sample) -> dict[str, list[torch.Tensor]]:
        """Every geometry's crops of this row's views (an empty list for kinds the row's split does not get).
        Views are drawn on the geometry's `view_base` (the decode, or the plain view's downscale of it, in the
        crop's mode: one band for a grey film), then cropped as the plain view is (backbones of one geometry
        share them), each in one warp straight into the plain crop (`extract.preprocess.plain_frame`)."""
        from headstart.data.augment import tta_views, views

        plan = self.views
        kind = plan.kind_for(sample.split)
        out = {view_key(key, k): [] for key in self.geometries for k in plan.kinds}
        if kind is None:
            return out
        for key, prep in self.geometries.items():
            frame = plain_frame(bases[key], prep)  # each view is warped straight into its plain crop
            drawn = (views(bases[key], sample.id, plan.k, plan.seed, plan.preset, **frame) if kind == "views"
                     else tta_views(bases[key], plan.m, **frame))
            out[view_key(key, kind)] = [crop_tensor(v, prep) for v in drawn]
        return out


def collate_crops(items: list[dict], *, geometries: dict[str, Preprocessing]) -> dict:
    """The PIL path's batch: row, ok and error as usual, each geometry's crops stacked channels-last; views
    (keys `geometry|kind`, see `extract.views`) flattened into one tensor per key with each row's count."""
    view_keys = [k for k in items[0] if "|" in k]
    batch = default_collate([{k: v for k, v in item.items() if k not in geometries and k not in view_keys}
                             for item in items])
    for key in geometries:
        batch[key] = stack_channels_last([item[key] for item in items])
    batch.update(stack_views(items, view_keys))
    return batch


def make_loader(dataset: DecodedImages, *, batch_size: int, workers: int, pin_memory: bool,
                threads: int = 0) -> Iterable[dict]:
    """Ordered batches, one pass (resume relies on row order only through the staged row indices): decoded by
    `threads` threads in this process between forwards when threads > 0 (`ThreadedBatches`), else by a
    DataLoader with `workers` processes."""
    collate = partial(collate_mixed if dataset.decode == "device" else collate_crops, geometries=dataset.geometries)
    if threads > 0:
        return ThreadedBatches(dataset, batch_size=batch_size, threads=threads, collate_fn=collate)
    return loading.make_loader(dataset, batch_size=batch_size, workers=workers, pin_memory=pin_memory,
                               collate_fn=collate)


def decode_plan(workers: int | None, device: torch.device, *, decode: str = "cpu") -> tuple[int, int]:
    """(decode worker processes, decode threads) for extract and predict: `--workers N` is N processes; the default
    is one thread per core decoding between forwards on a CPU with PIL decode (`ThreadedBatches`), else
    `device.default_workers` processes."""
    if workers is not None:
        return workers, 0
    if device.type == "cpu" and decode == "cpu":
        return 0, decode_threads(device)
    return default_workers(device), 0


class ThreadedBatches:
    """Batches decoded in this process by a pool of threads, one whole batch between two forwards.

    On a CPU the engine's threads take every core, and a decode worker process beside them preempts one of them:
    each op of the forward then waits for that thread. Decoding a batch on every core between forwards (PIL
    releases the GIL while it decodes and resizes) does the same work without that contention. On 2 cores
    (benchmarks/extract.py, resnet18, onnxruntime, quiet machine) `headstart extract` went from 0.77 to 0.95 of
    the forward-only rate on full-size JPEGs (49.3 -> 43.8 ms of CPU per image) and from 0.88 to 0.99 on 224-px
    ones; see README, Benchmarks, Extraction.
    """

    def __init__(self, dataset: Dataset, *, batch_size: int, threads: int, collate_fn: Callable[[list], dict]):
        self.dataset, self.batch_size, self.threads, self.collate_fn = dataset, batch_size, threads, collate_fn

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self) -> Iterator[dict]:
        n = len(self.dataset)
        with ThreadPoolExecutor(self.threads, thread_name_prefix="decode") as pool:
            for start in range(0, n, self.batch_size):
                rows = range(start, min(n, start + self.batch_size))
                yield self.collate_fn(list(pool.map(self.dataset.__getitem__, rows)))
