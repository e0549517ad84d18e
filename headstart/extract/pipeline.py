"""The one engine path and the one decode loop that `extract`, `predict` and `screen` share.

`start_engines` chooses the engine (`engines.choose_engine`), decodes the data set's first real images once when
onnxruntime runs a backbone, checks it against torch on them (`extract.features.attach_engine`) and logs one line
per backbone. `image_batches` decodes the rows to do once (threads or worker processes, PIL or the device's JPEG
decoder), applies `--on-bad-image` with one error text, and yields batches in row order behind a progress bar.
The callers differ only in what they do with a batch: stage features, or score them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from headstart.backbones.types import Preprocessing
from headstart.data.types import ImageSource, Sample
from headstart.engines import EngineChoice, choose_engine, onnx_installed
from headstart.errors import DataError
from headstart.extract.device_decode import DeviceJpegDecoder
from headstart.extract.features import FeatureModel, attach_engine, probe_batch, probe_images
from headstart.extract.loader import DecodedImages, make_loader
from headstart.extract.views import ViewPlan

log = logging.getLogger(__name__)

# model name -> (engine to attach, or None to attach none; the reason the engine line gives)
Settled = Mapping[str, tuple[str | None, str]]


def start_engines(models: Sequence[FeatureModel], images, *, spec: str, device: torch.device,
                  amp_dtype: torch.dtype | None,
                  settle: Callable[[EngineChoice], Settled] | None = None) -> dict[int, dict]:
    """Give every model its engine for `--engine spec`; returns the rows decoded for the check (by row).

    `images` is anything with `source` and `samples` (a split data set, predict's images). `settle` turns the
    choice into each model's engine (extraction keeps a stored set's engine); without it every model gets the
    choice. onnxruntime is decided on `images`' first real rows before anything is named after it; the caller's
    loop reuses the decoded rows (`image_batches(decoded=...)`), so no image is decoded twice.
    """
    choice = choose_engine(spec, device, amp_dtype=amp_dtype, onnx_available=onnx_installed())
    settled = settle(choice) if settle is not None else {m.name: (choice.name, choice.reason) for m in models}
    probed, probe = {}, None
    if any(engine == "onnxruntime" for engine, _ in settled.values()):
        probed = probe_images(images, models)
        probe = probe_batch(probed, models)
    for m in models:
        engine, reason = settled[m.name]
        if engine is not None:
            attach_engine(m, engine, device, amp_dtype=amp_dtype, probe=probe)
            log.info("%s", m.engine_line(reason or choice.reason))
    return probed


def image_batches(source: ImageSource, samples: list[Sample], rows: np.ndarray, preps: list[Preprocessing], *,
                  decode: str, batch_size: int, workers: int, threads: int, device: torch.device,
                  on_bad_image: str, decoded: Mapping[int, dict] | None = None, desc: str = "",
                  progress: bool = True, views: ViewPlan | None = None) -> Iterator[tuple[dict, np.ndarray]]:
    """(batch, ok) for `rows`, decoded once and cropped for every preprocessing, in row order.

    A bad image stops the run with one line under `on_bad_image == "fail"`; under "skip" it logs one warning and
    comes back with ok False (placeholder pixels, its message in `batch["error"]`). `decoded` holds rows already
    decoded (the engine check's probe). `progress` False hides the bar and the device-decode notes (other ranks).
    `views` adds each row's augmented or test-time views from the same decode (`extract.views`).
    """
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return
    mine = set(rows.tolist())
    images = DecodedImages(source, samples, rows, preps, decode=decode, views=views,
                           decoded={row: item for row, item in (decoded or {}).items() if row in mine})
    loader = make_loader(images, batch_size=batch_size, workers=workers if len(rows) > batch_size else 0,
                         pin_memory=device.type == "cuda", threads=threads)
    decoder = DeviceJpegDecoder(images, device=device) if decode == "device" else None
    if decoder is not None and device.type != "cuda" and progress:
        log.warning("--decode device on %s decodes JPEGs with torchvision's libjpeg-turbo in the main process; "
                    "it is meant for CUDA (nvJPEG), where CPU decode limits throughput", device)
    with tqdm(total=len(rows), unit="img", desc=desc, disable=None if progress else True) as bar:
        for batch in loader:
            if decoder is not None:
                batch = decoder.complete(batch)
            ok = batch["ok"].numpy().astype(bool)
            for j in np.flatnonzero(~ok):
                if on_bad_image == "fail":
                    raise DataError(f"{batch['error'][j]}; fix or remove the file, or pass --on-bad-image skip")
                log.warning("skipping bad image: %s", batch["error"][j])
            yield batch, ok
            bar.update(len(ok))
    if decoder is not None and progress:
        log.info("--decode device: %d images decoded on %s, %d refused by decode_jpeg and decoded by PIL, "
                 "%d others (not plain JPEGs) decoded by PIL in the workers", decoder.n_device, device,
                 decoder.n_fallback, len(rows) - decoder.n_device - decoder.n_fallback)
