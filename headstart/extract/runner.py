"""Stage one: run every requested frozen backbone once over the data set and cache the pooled features.

The loop is deliberately plain: decode (workers) -> normalise on device -> forward each backbone under
`inference_mode` -> stage the batch durably. All persistence, resume and atomic publication live in
`headstart.cache` (writer, stager, publisher), so this module only decides *what* to compute.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from headstart.backbones.registry import create_backbone
from headstart.backbones.weights import rebuild_attrs
from headstart.backbones.types import Backbone
from headstart.cache.fingerprint import compute_fingerprint
from headstart.cache.request import CacheRequest, FeatureSetSpec, SamplesTable
from headstart.cache.stager import Stager, WriteBehind
from headstart.cache.writer import CacheWriter, plan_for
from headstart.data.dataset import build_dataset, manifest_hash
from headstart.data.imagemeta import from_text
from headstart.data.types import Dataset
from headstart.device import (
    autocast_dtype,
    cudnn_benchmark,
    default_workers,
    precision_name,
    resolve_device,
)
from headstart.distributed import (
    DistInfo,
    all_gather_object,
    barrier,
    broadcast_object,
    init_distributed,
    require_same_request,
    same_outcome,
)
from headstart.errors import CacheError, DataError
from headstart.extract.config import ExtractConfig
from headstart.extract.device_decode import DeviceJpegDecoder, check_device_resizable
from headstart.extract.loader import DecodedImages, geometry_key, make_loader
from headstart.extract.forward import forward_features, prepare_model
from headstart.versions import collect_versions

log = logging.getLogger(__name__)


@dataclass
class ExtractResult:
    """What one extraction did, for the CLI summary and for benchmarks."""

    cache_path: str
    extracted: list[str] = field(default_factory=list)  # feature sets computed by this run
    already_done: list[str] = field(default_factory=list)  # sets that were complete and matched
    n_images: int = 0  # images decoded by this run, all ranks together (resume skips staged rows)
    seconds: float = 0.0  # wall time of the decode+forward loop (under torchrun: the slowest rank's)
    skipped: list[str] = field(default_factory=list)  # ids of bad images skipped
    world_size: int = 1  # processes (torchrun ranks) that shared the work; counts and seconds are the whole job's

    @property
    def images_per_second(self) -> float:
        return self.n_images / self.seconds if self.seconds > 0 else float("nan")


def samples_table(dataset: Dataset, *, data: str, config: ExtractConfig) -> SamplesTable:
    """The /samples table and root metadata of the cache for a split data set."""
    return SamplesTable(
        ids=[s.id for s in dataset.samples],
        labels=[s.label for s in dataset.samples],
        splits=[s.split for s in dataset.samples],
        groups=[s.group for s in dataset.samples],
        classes=list(dataset.classes),
        manifest_hash=manifest_hash(dataset.samples, dataset.classes),
        attrs={
            "source": {"data": str(Path(data).resolve()), "kind": dataset.source.kind},
            "split_config": asdict(config.split),
            "duplicates": dataset.duplicates,
        },
    )


def feature_spec(backbone: Backbone, *, table: SamplesTable, dtype: str, decode: str = "cpu") -> FeatureSetSpec:
    prep = backbone.preprocessing.to_dict()
    if decode != "cpu":  # its resampling differs slightly from PIL's; cpu-mode fingerprints stay as they were
        prep["decode"] = decode
    return FeatureSetSpec(
        name=backbone.name,
        backbone=backbone.name,
        weights_tag=backbone.weights_tag,
        weights_sha256=backbone.weights_sha256,
        preprocessing=prep,
        dim=backbone.num_features,
        dtype=dtype,
        fingerprint=compute_fingerprint(
            backbone=backbone.name,
            weights_tag=backbone.weights_tag,
            weights_sha256=backbone.weights_sha256,
            preprocessing=prep,
            manifest_hash=table.manifest_hash,
        ),
    )


def run_extract(*, data: str, output: str, config: ExtractConfig) -> ExtractResult:
    """Extract every backbone in `config` over `data` into the cache at `output` (resumable, atomic).

    Under `torchrun` with several processes, each rank extracts a disjoint contiguous block of the rows still to
    do and stages it into the shared `<output>.parts/`; rank 0 holds the lock and publishes the one cache file,
    which equals a single-process run. One process is the same code with a world of one.
    """
    config.validate()
    job = init_distributed()
    device = resolve_device(config.device)
    amp_dtype = autocast_dtype(config.precision, device)
    out = Path(output)
    if out.is_dir():
        raise DataError(f"output {out} is a directory; expected a file path such as {out / 'features.h5'}")
    out.parent.mkdir(parents=True, exist_ok=True)

    # Backbones first: an unknown name or missing weights should fail before the data set is scanned.
    backbones = [
        create_backbone(name, weights=config.weights, image_size=config.image_size, seed=config.seed)
        for name in config.backbones
    ]
    dataset = build_dataset(data, split_config=config.split, find_duplicates=job.is_main)  # rank 0 records it
    table = samples_table(dataset, data=data, config=config)
    if config.decode == "device":
        check_device_resizable({b.name: b.preprocessing for b in backbones})
    specs = [feature_spec(b, table=table, dtype=config.feature_dtype, decode=config.decode) for b in backbones]
    if job.distributed:
        require_same_request({"data": data, "output": output, **asdict(config),
                              "fingerprints": [s.fingerprint for s in specs]})
    rank = job.rank if job.distributed else None
    with same_outcome():  # read-only planning; every rank sees the same files, but a failure must stop them all
        if job.is_main:  # rank 0 writes: it alone takes the lock, prepares the staging area and publishes
            writer = CacheWriter(out, table, specs, overwrite=config.overwrite, rank=rank)
            request, planned = writer.request, writer.plan
        else:  # the other ranks only stage batches
            writer, request = None, CacheRequest.of(out, table, specs, overwrite=config.overwrite)
            planned = plan_for(request)
    result = ExtractResult(cache_path=str(out), world_size=job.world_size)
    result.already_done = [s.name for s in specs if s.name not in planned.todo]
    for name in result.already_done:
        log.info("feature set %s is already complete in %s (same fingerprint); skipping it", name, out)
    todo = [b for b in backbones if b.name in planned.todo]
    if not todo:
        with same_outcome():
            if job.is_main:
                with writer:  # a crash after publishing but before cleanup leaves a staging folder; finish removes it
                    writer.finish(stats={}, skipped=[])
        return result

    with contextlib.ExitStack() as stack:
        # Rank 0 takes the lock and prepares (cleans, checks) the staging area before any other rank joins it.
        with same_outcome():
            stager = stack.enter_context(writer).stager if job.is_main else None
            rows = np.flatnonzero(~stager.done_mask()) if job.is_main else None
        rows = broadcast_object(rows)
        with same_outcome():
            if not job.is_main:
                stager = Stager.joined(request, planned.todo, rank=rank)
        if len(rows) < len(table.ids):
            log.info("resuming: %d of %d images already staged", len(table.ids) - len(rows), len(table.ids))
        shard = np.array_split(rows, job.world_size)[job.rank]  # contiguous blocks; may be empty
        with same_outcome():
            mine = _extract_rows(shard, stager=stager, dataset=dataset, todo=todo, device=device, amp_dtype=amp_dtype,
                                 config=config, job=job)
        shards = all_gather_object(mine)
        # Ranks start their loops together (right after the broadcast), so the job's loop time is the slowest one's.
        seconds = max(s.seconds for s in shards)
        skipped = [i for s in shards for i in s.skipped]
        with same_outcome():
            if job.is_main:
                if job.distributed:
                    _collect_shards(stager)
                stats = _stats(todo, shards, device=device, amp_dtype=amp_dtype, config=config, n_rows=len(rows),
                               seconds=seconds, world_size=job.world_size)
                # Skipped images of earlier (interrupted) sessions are staged with valid=False; the writer knows them.
                writer.finish(stats=stats, skipped=skipped)
    barrier()  # every rank returns after the cache exists
    result.extracted = [b.name for b in todo]
    result.n_images, result.seconds, result.skipped = len(rows), seconds, skipped
    return result


@dataclass
class ShardResult:
    """What one rank did; gathered on every rank to build the job's statistics."""

    n_rows: int  # rows this rank decoded and staged
    forward_seconds: dict[str, float]  # per backbone: normalise + forward + copy back (device synchronised)
    seconds: float  # this rank's loop wall time
    skipped: list[str]  # ids of bad images skipped by this rank


def _extract_rows(rows: np.ndarray, *, stager: Stager, dataset: Dataset, todo: list[Backbone],
                  device: torch.device, amp_dtype: torch.dtype | None, config: ExtractConfig,
                  job: DistInfo) -> ShardResult:
    """Decode `rows` once, run every backbone in `todo` on them and stage the features batch by batch."""
    models = {b.name: prepare_model(b.module, device) for b in todo}
    workers = default_workers(device) if config.workers is None else config.workers
    images = DecodedImages(dataset.source, dataset.samples, rows, [b.preprocessing for b in todo],
                           decode=config.decode)
    loader = make_loader(images, batch_size=config.batch_size, workers=workers if len(rows) > config.batch_size else 0,
                         pin_memory=device.type == "cuda")
    decoder = DeviceJpegDecoder(images, device=device) if config.decode == "device" else None
    if decoder is not None and device.type != "cuda" and job.is_main:
        log.warning("--decode device on %s decodes JPEGs with torchvision's libjpeg-turbo in the main process; "
                    "it is meant for CUDA (nvJPEG), where CPU decode limits throughput", device)
    skipped: list[str] = []
    desc = f"extract {'+'.join(b.name for b in todo)}"
    if job.distributed:
        desc += f" (rank 0 of {job.world_size})"
    bar = tqdm(total=len(rows), unit="img", desc=desc, disable=None if job.is_main else True)
    forward_seconds = {b.name: 0.0 for b in todo}
    start = time.perf_counter()
    # every batch has one shape: cuDNN may pick kernels; batches are staged while the next one is computed
    with torch.inference_mode(), cudnn_benchmark(device), WriteBehind(stager) as staged:
        for batch in loader:
            if decoder is not None:
                batch = decoder.complete(batch)
            ok = batch["ok"].numpy().astype(bool)
            for j in np.flatnonzero(~ok):
                if config.on_bad_image == "fail":
                    raise DataError(f"{batch['error'][j]}; fix or remove the file, or pass --on-bad-image skip")
                skipped.append(dataset.samples[int(batch["row"][j])].id)
                log.warning("skipping bad image: %s", batch["error"][j])
            feats = {}
            for b in todo:
                t0 = time.perf_counter()
                crops = batch[geometry_key(b.preprocessing)]
                feats[b.name] = forward_features(models[b.name], crops, b.preprocessing, device=device,
                                                 amp_dtype=amp_dtype).numpy()  # synchronised: honest timing
                feats[b.name][~ok] = 0.0
                forward_seconds[b.name] += time.perf_counter() - t0
            staged.write_batch(batch["row"].numpy(), feats, ok, meta=[from_text(t) for t in batch["meta"]])
            bar.update(len(ok))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    bar.close()
    if decoder is not None:
        log.info("--decode device: %d images decoded on %s, %d refused by decode_jpeg and decoded by PIL, "
                 "%d others (not plain JPEGs) decoded by PIL in the workers", decoder.n_device, device,
                 decoder.n_fallback, len(rows) - decoder.n_device - decoder.n_fallback)
    return ShardResult(n_rows=len(rows), forward_seconds=forward_seconds, seconds=time.perf_counter() - start,
                       skipped=skipped)


def _collect_shards(stager: Stager) -> None:
    """Rank 0: pick up every rank's parts and make sure none is missing before publishing."""
    stager.rescan()
    missing = int((~stager.done_mask()).sum())
    if missing:
        raise CacheError(
            f"{missing} rows staged by other ranks are not visible in {stager.staging.folder}; the output must be on "
            f"a file system every rank shares (every node sees the same -o path); rerun the same command to resume"
        )


def _stats(todo: list[Backbone], shards: list[ShardResult], *, device: torch.device, amp_dtype: torch.dtype | None,
           config: ExtractConfig, n_rows: int, seconds: float, world_size: int) -> dict[str, dict]:
    """Per-set statistics of the whole job, timed by the slowest rank's loop.

    Each set is charged its own forward time plus an equal share of the shared decode/write time, so a set's
    `seconds` is what extracting it would cost, and the sets of one run sum to the loop time. With several ranks
    the forward time is the ranks' sum divided by the world size (they ran side by side); the raw sum is kept as
    `forward_seconds` (device-seconds) next to `world_size`.
    """
    forward_sum = {b.name: sum(s.forward_seconds[b.name] for s in shards) for b in todo}
    forward_wall = {name: t / world_size for name, t in forward_sum.items()}
    shared = max(0.0, seconds - sum(forward_wall.values())) / len(todo)
    device_name = str(device) if device.type == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})"
    if world_size > 1:
        device_name += f" x {world_size} ranks"
    return {
        b.name: {
            "device": device_name,
            "seconds": forward_wall[b.name] + shared,
            "loop_seconds": seconds,
            "forward_seconds": forward_sum[b.name],
            "images_per_second": n_rows / (forward_wall[b.name] + shared) if seconds > 0 else 0.0,
            "precision": precision_name(amp_dtype),
            "batch_size": config.batch_size,
            "world_size": world_size,
            "versions": collect_versions(),
            **rebuild_attrs(b, seed=config.seed),  # what `predict` needs to rebuild random weights exactly
        }
        for b in todo
    }


def extract_rows(rows: np.ndarray, *, stager: Stager, dataset: Dataset, backbones: list[Backbone],
                 device: torch.device, config: ExtractConfig) -> ShardResult:
    """Decode `rows` once and stage every backbone's features for them, in this one process: the loop of
    `run_extract`, for a caller that chooses the rows itself (`headstart screen`'s rounds)."""
    return _extract_rows(np.asarray(rows, dtype=np.int64), stager=stager, dataset=dataset, todo=backbones,
                         device=device, amp_dtype=autocast_dtype(config.precision, device), config=config,
                         job=DistInfo())
