"""Stage one: run every requested frozen backbone once over the data set and cache the pooled features.

The loop is deliberately plain: decode (worker processes, or on a CPU threads between forwards) -> `features.compute_features` (normalise, one forward pass of
each backbone's engine giving all its (layer, pool) sets) -> stage the batch durably. Which engine computes each
set is settled before the cache is planned (`sets.settle_engine`), so a fingerprint always names the engine that
ran. All persistence, resume and atomic publication live in `headstart.cache` (writer, stager, publisher), so
this module only decides *what* to compute.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from headstart.backbones.sanity import EmbeddingStats
from headstart.backbones.weights import rebuild_attrs, torchvision_gflops
from headstart.cache.plan import CacheRequest, FeatureSetSpec, SamplesTable
from headstart.cache.stager import Stager, WriteBehind
from headstart.cache.writer import CacheWriter, WriterLock, plan_for
from headstart.data.dataset import build_dataset, manifest_hash
from headstart.data.imagemeta import from_text
from headstart.data.types import Dataset
from headstart.device import autocast_dtype, cudnn_benchmark, precision_name, resolve_device
from headstart.distributed import (
    DistInfo,
    all_gather_object,
    barrier,
    broadcast_object,
    init_distributed,
    require_same_request,
    same_outcome,
)
from headstart.engines import EngineChoice, choose_engine, onnx_installed
from headstart.errors import CacheError, ConfigError, DataError, DependencyError
from headstart.extract.config import ExtractConfig
from headstart.extract.device_decode import check_device_resizable
from headstart.extract.features import FeatureModel, build_feature_models, compute_all
from headstart.extract.loader import decode_plan
from headstart.extract.pipeline import image_batches, start_engines
from headstart.extract.sets import ENGINE_NAMES, feature_spec, settle_engine, stored_engines
from headstart.extract.views import view_specs
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
    multilabel = dataset.task == "multilabel"
    return SamplesTable(
        ids=[s.id for s in dataset.samples],
        labels=[-1 if multilabel else s.label for s in dataset.samples],  # multilabel: /samples/labels instead
        splits=[s.split for s in dataset.samples],
        groups=[s.group for s in dataset.samples],
        classes=list(dataset.classes),
        manifest_hash=manifest_hash(dataset.samples, dataset.classes),
        attrs={
            "source": {"data": str(Path(data).resolve()), "kind": dataset.source.kind},
            "split_config": asdict(config.split),
            "duplicates": dataset.duplicates,
        },
        task=dataset.task,
        label_matrix=np.array([s.labels for s in dataset.samples], dtype=np.int8) if multilabel else None,
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
    if config.trust_remote_code:
        log.warning("--trust-remote-code: Hugging Face models may run code from their repository in this process")
    models = build_feature_models(config.backbones, weights=config.weights, image_size=config.image_size,
                                  seed=config.seed, pools=config.pools, layers=config.layers,
                                  trust_remote_code=config.trust_remote_code, crop=config.crop,
                                  views=config.view_plan(), view_chunk=config.batch_size)
    dataset = build_dataset(data, split_config=config.split, find_duplicates=job.is_main,  # rank 0 records it
                            source_options=config.source)
    table = samples_table(dataset, data=data, config=config)
    if config.decode == "device":
        check_device_resizable({m.name: m.backbone.preprocessing for m in models})
    workers, threads = decode_plan(config.workers, device, decode=config.decode)
    if job.is_main:  # another writer at work: say so before exporting or checking any engine
        WriterLock(out).check_free()
    specs, probed = _settle_engines(models, out, table, dataset, config=config, device=device, amp_dtype=amp_dtype)
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
    todo = [m for m in models if any(name in planned.todo for name in m.set_names)]
    for m in todo:
        m.keep = tuple(name for name in m.set_names if name in planned.todo)
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
            unused = {m.geometry for m in models} - {m.geometry for m in todo}  # crops no todo backbone reads
            decoded = {row: {k: v for k, v in item.items() if k not in unused} for row, item in probed.items()
                       if config.decode == "cpu"}  # the probe decoded with PIL: --decode device decodes them again
            mine = _extract_rows(shard, stager=stager, dataset=dataset, todo=todo, device=device, workers=workers,
                                 threads=threads, config=config, job=job, decoded=decoded)
        shards = all_gather_object(mine)
        # Ranks start their loops together (right after the broadcast), so the job's loop time is the slowest one's.
        seconds = max(s.seconds for s in shards)
        skipped = [i for s in shards for i in s.skipped]
        with same_outcome():
            if job.is_main:
                if job.distributed:
                    _collect_shards(stager)
                stats = _stats(todo, shards, device=device, config=config, n_rows=len(rows), seconds=seconds,
                               world_size=job.world_size)
                # Skipped images of earlier (interrupted) sessions are staged with valid=False; the writer knows them.
                writer.finish(stats=stats, skipped=skipped)
    barrier()  # every rank returns after the cache exists
    result.extracted = [name for m in todo for name in m.keep]
    result.n_images, result.seconds, result.skipped = len(rows), seconds, skipped
    return result


def _settle_engines(models: list[FeatureModel], out: Path, table: SamplesTable, dataset: Dataset, *,
                    config: ExtractConfig, device: torch.device,
                    amp_dtype: torch.dtype | None) -> tuple[list[FeatureSetSpec], dict[int, dict]]:
    """Give each backbone with sets left to compute its engine (see `sets`); return every set's spec, named after
    the engine that computes (or computed) it, and the rows decoded to check an onnxruntime engine on."""
    state = {m.name: rebuild_attrs(m.backbone, seed=config.seed) for m in models}  # hashed: seed and weights
    by_engine = {e: {spec.name: spec for m in models for o in m.outputs
                     for base in [feature_spec(m.backbone, o, e, table=table, dtype=config.feature_dtype,
                                               decode=config.decode, precision=precision_name(amp_dtype),
                                               random_state=state[m.name])]
                     for spec in [base, *view_specs(base, config.view_plan(), table)]}
                 for e in ENGINE_NAMES}
    settled = {}

    def settle(choice: EngineChoice) -> dict[str, tuple[str | None, str]]:
        """Each backbone's engine: a stored set keeps its own (`sets.settle_engine`); the plan may refuse."""
        stored = stored_engines(out, table, by_engine)
        usable = {choice.name} | {e for e in ENGINE_NAMES if _usable(e, device, amp_dtype)}
        settled.update({m.name: settle_engine(config.engine, choice.name, {n: stored[n] for n in m.set_names},
                                              usable=usable, overwrite=config.overwrite, where=str(out))
                        for m in models})
        tentative = [by_engine[s.reused.get(name) or s.engine][name] for m in models for name in m.set_names
                     for s in [settled[m.name]]]
        plan_for(CacheRequest.of(out, table, tentative, overwrite=config.overwrite))  # refusals before any export
        return {name: (s.engine, s.reason) for name, s in settled.items()}

    probed = start_engines(models, dataset, spec=config.engine, device=device, amp_dtype=amp_dtype, settle=settle)
    specs = [by_engine[settled[m.name].reused.get(name) or m.engine.name][name] for m in models
             for name in m.set_names]
    return specs, probed


def _usable(engine: str, device: torch.device, amp_dtype: torch.dtype | None) -> bool:
    try:
        return choose_engine(engine, device, amp_dtype=amp_dtype, onnx_available=onnx_installed()).name == engine
    except (ConfigError, DependencyError):
        return False


@dataclass
class ShardResult:
    """What one rank did; gathered on every rank to build the job's statistics."""

    n_rows: int  # rows this rank decoded and staged
    forward_seconds: dict[str, float]  # per backbone: normalise + forward + copy back (device synchronised)
    seconds: float  # this rank's loop wall time
    skipped: list[str]  # ids of bad images skipped by this rank
    input_range: dict[str, tuple[float, float]] = field(default_factory=dict)  # per backbone: what it was fed
    stats: dict[str, EmbeddingStats] = field(default_factory=dict)  # per set: the sanity tallies of its rows


def _extract_rows(rows: np.ndarray, *, stager: Stager | CacheWriter, dataset: Dataset, todo: list[FeatureModel],
                  device: torch.device, workers: int, config: ExtractConfig, job: DistInfo,
                  decoded: dict[int, dict], threads: int = 0) -> ShardResult:
    """Decode `rows` once, compute every wanted set of `todo` on them and stage the features batch by batch;
    `decoded` holds rows the engine check already decoded. `stager` is anything with the stager's `write_batch`
    (a `Stager`, or a `CacheWriter` for a single-process caller)."""
    skipped: list[str] = []
    desc = f"extract {'+'.join(m.name for m in todo)}"
    if job.distributed:
        desc += f" (rank 0 of {job.world_size})"
    batches = image_batches(dataset.source, dataset.samples, rows, [m.backbone.preprocessing for m in todo],
                            decode=config.decode, batch_size=config.batch_size, workers=workers, threads=threads,
                            device=device, on_bad_image=config.on_bad_image, decoded=decoded, desc=desc,
                            progress=job.is_main,
                            views=config.view_plan() if any(m.views.keys() & set(m.wanted()) for m in todo) else None)
    start = time.perf_counter()
    # every batch has one shape: cuDNN may pick kernels; batches are staged while the next one is computed
    with torch.inference_mode(), cudnn_benchmark(device), WriteBehind(stager) as staged:
        for batch, ok in batches:
            skipped += [dataset.samples[int(row)].id for row in batch["row"][~ok]]
            feats, masks = compute_all(todo, batch, device=device, valid=ok)  # masks: the view sets' rows
            staged.write_batch(batch["row"].numpy(), feats, {"": ok, **masks},
                               meta=[from_text(t) for t in batch["meta"]])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return ShardResult(n_rows=len(rows), forward_seconds={m.name: m.forward_seconds for m in todo},
                       seconds=time.perf_counter() - start, skipped=skipped,
                       input_range={m.name: m.input_range for m in todo},
                       stats={name: m.stats.get(name, EmbeddingStats()) for m in todo for name in m.wanted()})


def _collect_shards(stager: Stager) -> None:
    """Rank 0: pick up every rank's parts and make sure none is missing before publishing."""
    stager.rescan()
    missing = int((~stager.done_mask()).sum())
    if missing:
        raise CacheError(
            f"{missing} rows staged by other ranks are not visible in {stager.staging.folder}; the output must be on "
            f"a file system every rank shares (every node sees the same -o path); rerun the same command to resume"
        )


def _stats(todo: list[FeatureModel], shards: list[ShardResult], *, device: torch.device, config: ExtractConfig,
           n_rows: int, seconds: float, world_size: int) -> dict[str, dict]:
    """Per-set statistics of the whole job, timed by the slowest rank's loop; the engine and sanity attributes.

    Each backbone is charged its own forward time plus an equal share of the shared decode/write time, so the
    backbones of one run sum to the loop time. Every set of a backbone records the backbone's whole time, what
    extracting it would cost (they come from one forward pass; `sets_per_forward` says how many shared it). With
    several ranks the forward time is the ranks' sum divided by the world size (they ran side by side); the raw
    sum is kept as `forward_seconds` (device-seconds) next to `world_size`.
    """
    forward_sum = {m.name: sum(s.forward_seconds[m.name] for s in shards) for m in todo}
    forward_wall = {name: t / world_size for name, t in forward_sum.items()}
    shared = max(0.0, seconds - sum(forward_wall.values())) / len(todo)
    device_name = str(device) if device.type == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})"
    if world_size > 1:
        device_name += f" x {world_size} ranks"
    out = {}
    for m in todo:
        m.input_range = (min(s.input_range[m.name][0] for s in shards), max(s.input_range[m.name][1] for s in shards))
        engine = m.engine.describe()
        for name in m.wanted():
            m.stats[name] = EmbeddingStats()
            for shard in shards:
                m.stats[name].merge(shard.stats[name])
            sanity, warnings = m.sanity(name)
            for warning in warnings:
                log.warning("%s", warning)
            out[name] = {
                "device": device_name,
                "seconds": forward_wall[m.name] + shared,
                "loop_seconds": seconds,
                "forward_seconds": forward_sum[m.name],
                "images_per_second": n_rows / (forward_wall[m.name] + shared) if seconds > 0 else 0.0,
                "batch_size": config.batch_size,
                "world_size": world_size,
                "sets_per_forward": len(m.wanted()),
                "versions": collect_versions(),
                **engine,  # engine, engine_version, precision, and onnxruntime's graph/threads/check
                "sanity": json.dumps({**sanity, "warnings": warnings}, sort_keys=True),
                **rebuild_attrs(m.backbone, seed=config.seed),  # what `predict` needs to rebuild random weights
                **({"gflops": gflops} if (gflops := torchvision_gflops(m.backbone.name)) is not None else {}),
            }
    return out


def extract_rows(rows: np.ndarray, *, writer: CacheWriter, dataset: Dataset, models: list[FeatureModel],
                 device: torch.device, config: ExtractConfig) -> ShardResult:
    """Decode `rows` once and stage every model's wanted sets for them through `writer` (entered), in this one
    process: the loop of `run_extract`, for a caller that chooses the rows itself (`headstart screen`'s rounds).
    The models carry their engines (`extract.pipeline.start_engines`)."""
    workers, threads = decode_plan(config.workers, device, decode=config.decode)
    return _extract_rows(np.asarray(rows, dtype=np.int64), stager=writer, dataset=dataset, todo=models,
                         device=device, workers=workers, threads=threads, config=config, job=DistInfo(),
                         decoded={})
