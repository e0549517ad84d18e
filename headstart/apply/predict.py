"""`headstart predict RUN DATA -o OUT.csv`: apply a run (or an exported model) to images, or to cached features.

Images go through extract's own decode loop and bad-image rule (`extract.pipeline.image_batches`) and, for a
cached head, its engine path (`extract.pipeline.start_engines`) and feature code (`extract.features`: the set's
backbone and layer/pool tap, on the engine
`--engine` picks, onnxruntime checked against torch on DATA's first real rows as extraction checks it); the
run's scorer turns each batch into probabilities. When DATA has labels the metrics are computed by the
records' evaluation code (the run's Task, at the frozen threshold) and written next to OUT. Under torchrun
each rank scores a contiguous block and rank 0 writes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from headstart.apply.card import RunCard
from headstart.apply.config import PredictConfig
from headstart.apply.inputs import Images, label_map, matching_set, read_images
from headstart.apply.output import columns, multilabel_table, table, write_metrics, write_table
from headstart.apply.runs import head_card, open_run, read_run
from headstart.apply.scorers import CachedHeadScorer, head_proba
from headstart.cache.reader import FeatureCache
from headstart.device import autocast_dtype, cudnn_benchmark, resolve_device
from headstart.distributed import all_gather_object, barrier, init_distributed, same_outcome
from headstart.errors import ConfigError, DataError
from headstart.extract.loader import decode_plan, geometry_key
from headstart.extract.pipeline import image_batches, start_engines
from headstart.extract.views import ViewPlan, view_key
from headstart.data.label_policy import evaluation_targets
from headstart.heads.views import average_views
from headstart.tasks.multilabel import ONE_CLASS

log = logging.getLogger(__name__)


@dataclass
class PredictResult:
    """What one `predict` did, for the CLI summary and for benchmarks."""

    output: str  # the table written (on torchrun rank 0; the same path on every rank)
    run_id: str
    classes: list[str]
    threshold: float | None
    n_rows: int = 0  # rows in the table
    n_skipped: int = 0  # bad images (rows without probabilities)
    seconds: float = 0.0  # wall time of the decode + forward + head loop (the slowest rank's)
    metrics: dict | None = None  # evaluate() of the labelled rows, with intervals; None without labels
    metrics_path: str | None = None
    skipped: list[str] = field(default_factory=list)  # ids of skipped images
    engine: str = ""  # what computed the probabilities: torch | onnxruntime (| torch.export); "" with --cache

    @property
    def images_per_second(self) -> float:
        return self.n_rows / self.seconds if self.seconds > 0 else float("nan")


def run_predict(*, run: str | Path, data: str | Path | None, output: str | Path, config: PredictConfig,
                progress: bool = True) -> PredictResult:
    """Score DATA (or `config.cache` rows) with RUN; write the table to `output`, metrics beside it."""
    config.validate()
    if data is not None and config.cache is not None:
        raise ConfigError("give either DATA (images to score) or --cache CACHE (features already extracted), not both")
    if data is None and config.cache is None:
        raise ConfigError("give DATA (images to score) or --cache CACHE (features already extracted)")
    out = Path(output)
    if out.is_dir():
        raise DataError(f"output {out} is a directory; expected a file path such as {out / 'predictions.csv'}")
    if config.cache is not None:
        card, ids, proba, labels, errors, seconds = _from_cache(run, config)
        job_main = True
    else:
        job = init_distributed()
        job_main = job.is_main
        with same_outcome():  # a rank that fails (a bad image, a missing file) stops every rank, not just itself
            device = resolve_device(config.device)
            amp_dtype = autocast_dtype(config.precision, device)
            scorer = open_run(run, device=device, amp_dtype=amp_dtype, weights=config.weights)
            card = scorer.card
            workers, threads = decode_plan(config.workers, device, decode=card.decode)
            images = read_images(data, card.classes, multilabel=card.multilabel)
            shard = np.array_split(np.arange(len(images.samples)), job.world_size)[job.rank]
            engine, probed = _start_engine(scorer, images, config=config, device=device, amp_dtype=amp_dtype)
            start = time.perf_counter()
            mine = _score_images(scorer, images, shard, config=config, device=device, workers=workers,
                                 threads=threads, progress=progress and job_main, decoded=probed)
            seconds = time.perf_counter() - start
        parts = all_gather_object((shard, *mine, seconds))
        proba = np.concatenate([p[1] for p in parts])
        errors = [e for p in parts for e in p[2]]
        seconds = max(p[3] for p in parts)
        ids = [s.id for s in images.samples]
        labels = _image_labels(images) if images.labelled else None
    result = PredictResult(output=str(out), run_id=card.run_id, classes=card.classes, threshold=card.threshold,
                           n_rows=len(ids), seconds=seconds, engine="" if config.cache is not None else engine)
    skip_mode = config.on_bad_image == "skip"
    result.skipped = [i for i, e in zip(ids, errors) if e]
    result.n_skipped = len(result.skipped)
    if job_main:
        _log_untrained(card)
        if card.multilabel:
            truth, known = _truth(card, labels) if labels is not None else (None, None)
            rows = multilabel_table(ids, proba, findings=card.classes, thresholds=card.thresholds(), labels=truth,
                                    known=known, errors=errors if skip_mode else None)
        else:
            rows = table(ids, proba, classes=card.classes, threshold=card.threshold, labels=labels,
                         errors=errors if skip_mode else None)
        header = columns(card.classes, labelled=labels is not None, reasons=skip_mode, multilabel=card.multilabel)
        write_table(out, rows, header, config.format)
        if labels is not None:
            result.metrics, result.metrics_path = _metrics(card, ids, proba, labels, config=config, out=out, data=data,
                                                           engine=result.engine)
    if config.cache is None:
        barrier()  # every rank returns after the table exists
    return result


def _start_engine(scorer, images: Images, *, config: PredictConfig, device: torch.device,
                  amp_dtype: torch.dtype | None) -> tuple[str, dict[int, dict]]:
    """Give a cached head's feature model its engine through extraction's own path (`extract.pipeline`):
    onnxruntime is checked against torch on DATA's first real rows before any row is scored (one warning line
    when it falls back). Logs the engine line; returns the engine's name and the rows decoded for the check.
    Fine-tunes run on torch, exported models on their own runtime."""
    if not isinstance(scorer, CachedHeadScorer):
        if config.engine != "auto":
            log.info("--engine %s applies to a cached head's backbone; %s runs on %s", config.engine,
                     scorer.card.run_id, scorer.engine_name)
        return scorer.engine_name, {}
    probed = start_engines([scorer.model], images, spec=config.engine, device=device, amp_dtype=amp_dtype)
    return scorer.engine_name, probed


def _score_images(scorer, images: Images, rows: np.ndarray, *, config: PredictConfig, device: torch.device,
                  workers: int, progress: bool, threads: int = 0,
                  decoded: dict[int, dict] | None = None) -> tuple[np.ndarray, list[str]]:
    """(probabilities (n, C) with NaN rows for skipped images, one error string per row ('' when fine));
    `decoded` holds rows the engine check already decoded."""
    card: RunCard = scorer.card
    proba = np.full((len(rows), len(card.classes)), np.nan)
    errors = [""] * len(rows)
    position = {int(r): i for i, r in enumerate(rows)}
    batches = image_batches(images.source, images.samples, rows, [card.preprocessing], decode=card.decode,
                            batch_size=config.batch_size, workers=workers, threads=threads, device=device,
                            on_bad_image=config.on_bad_image, decoded=decoded, desc=f"predict {card.run_id}",
                            progress=progress, views=ViewPlan(m=card.tta, tta_everywhere=True) if card.tta else None)
    with torch.inference_mode(), cudnn_benchmark(device):
        for batch, ok in batches:
            at = np.array([position[int(r)] for r in batch["row"]])
            for j in np.flatnonzero(~ok):
                errors[at[j]] = batch["error"][j]
            p = scorer.score(batch[geometry_key(card.preprocessing)])
            if card.tta:  # heads --tta on: averaged with the same M test-time views
                p = _tta(scorer, batch, p, ok)
            proba[at[ok]] = p[ok]
    return proba, errors


def _tta(scorer, batch: dict, plain: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """A --tta on head's probabilities: the plain ones averaged with those of the batch's M test-time views."""
    m, key = scorer.card.tta, view_key(scorer.model.geometry, "tta")
    out = np.array(plain, copy=True)
    if ok.any():
        views = scorer.features(batch[key]).reshape(int(ok.sum()), m, -1)
        out[ok] = average_views(scorer.head, plain[ok], views, len(scorer.card.classes))
    return out


def _from_cache(run: str | Path, config: PredictConfig):
    """A cached head on features already in a cache: no backbone runs, the rows are read as `heads` reads them."""
    folder = read_run(run)
    if folder.head is None:
        raise ConfigError(f"--cache applies a cached head; {run} is a fine-tune run; pass DATA images instead")
    card = head_card(folder)
    start = time.perf_counter()
    with FeatureCache(config.cache) as cache:
        if card.multilabel != (cache.task == "multilabel"):
            raise DataError(f"{cache.path} is {cache.task} but {card.run_id} is {card.task.kind}; pass a cache of "
                            "the data set's kind of labels, or DATA images")
        name = matching_set(cache.feature_sets, card.feature_set, cache=cache.path)
        X, valid = cache.load(name)
        keep = np.ones(cache.n_samples, dtype=bool) if config.split is None else cache.splits == config.split
        if not keep.any():
            raise DataError(f"{cache.path} has no {config.split} rows; expected one of "
                            f"{', '.join(sorted(set(cache.splits)))}")
        ids, X, valid = [str(i) for i in cache.ids[keep]], X[keep], valid[keep]
        if card.multilabel:
            labels = _finding_columns(cache.label_matrix[keep], list(cache.classes), card.classes, where=cache.path)
        else:
            mapping = label_map(list(cache.classes), card.classes)
            labels = mapping[cache.labels[keep]] if mapping is not None else None
        views = _cached_tta(cache, name, keep, valid) if card.tta else None
    proba = np.full((len(ids), len(card.classes)), np.nan)
    proba[valid] = head_proba(folder.head.estimator, X[valid], card)
    if views is not None:
        proba[valid] = average_views(folder.head.estimator, proba[valid], views[valid], len(card.classes))
    errors = ["" if v else "no features: the image was skipped at extraction" for v in valid]
    if (~valid).any() and config.on_bad_image == "fail":
        first = ids[int(np.flatnonzero(~valid)[0])]
        raise DataError(f"{int((~valid).sum())} row(s) of {config.cache} have no features (images skipped at "
                        f"extraction, e.g. {first}); pass --on-bad-image skip to list them as rows with a reason")
    return card, ids, proba, labels, errors, time.perf_counter() - start


def _cached_tta(cache: FeatureCache, name: str, keep: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The kept rows' cached test-time views (n, M, D) for a --tta on head; DataError when a scored row lacks them."""
    views, has = cache.load_views(name, "tta")
    lacking = valid & ~has[keep]
    if lacking.any():
        raise DataError(f"{int(lacking.sum())} row(s) of {cache.path} have no cached test-time views (only val and "
                        f"test rows get them); this run averages them: pass --split test or --split val")
    return views[keep]


def _image_labels(images: Images) -> np.ndarray:
    """(N,) class indices, or for a multi-label run (N, L) raw codes in the run's finding order."""
    if images.raw is not None:
        return images.raw
    return np.array([s.label for s in images.samples])


def _finding_columns(raw: np.ndarray | None, have: list[str], findings: list[str], *, where) -> np.ndarray | None:
    """Raw (N, L) codes reordered to the run's findings; None (predict without labels) when some finding is absent."""
    missing = [f for f in findings if f not in have]
    if raw is None or missing:
        log.warning("%s lacks the run's finding(s) %s; predicting without labels", where,
                    ", ".join(missing) if raw is not None else "(no /samples/labels)")
        return None
    return np.asarray(raw)[:, [have.index(f) for f in findings]]


def _truth(card: RunCard, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(0/1 truth, known mask) of raw codes as evaluation reads them: never an uncertain label, blanks by the
    run's --blank rule (the default reading, negative, when the run names none)."""
    return evaluation_targets(raw, card.label_policy.get("blank") or "negative", card.classes)


def _log_untrained(card: RunCard) -> None:
    for finding, reason in card.untrained.items():
        log.warning("finding %s was left out of training (%s); its proba_%s and %s columns are empty", finding,
                    reason.removeprefix("not trained: "), finding, finding)
    if card.multilabel:
        none = [f for f, t in zip(card.classes, card.thresholds()) if t is None and f not in card.untrained]
        if none:
            log.warning("finding(s) %s have no frozen threshold (one class among the val rows): their decision "
                        "columns cut at 0.5", ", ".join(none))


def _metrics(card: RunCard, ids: list[str], proba: np.ndarray, labels: np.ndarray, *, config: PredictConfig,
             out: Path, data, engine: str) -> tuple[dict | None, str | None]:
    """The record's metrics (with intervals) of the labelled, scored rows, written next to OUT."""
    if card.multilabel:
        truth, known = _truth(card, labels)
        scored = np.isfinite(proba)
        use = scored.any(axis=1) & known.any(axis=1)
        if not use.any():
            return None, None
        metrics = card.task.evaluate(truth[use], np.nan_to_num(proba[use]), threshold=card.thresholds(),
                                     n_boot=config.n_boot, seed=0, mask=(known & scored)[use])
        for finding, reason in card.untrained.items():
            entry = metrics["per_label"].get(finding)
            if entry is not None and entry.get("reason") == ONE_CLASS:
                entry["reason"] = f"left out of training: {reason.removeprefix('not trained: ')}"
        n_skipped = int((~scored.any(axis=1)).sum())
    else:
        use = np.isfinite(proba).all(axis=1) & (labels >= 0)
        if not use.any():
            return None, None
        metrics = card.task.evaluate(labels[use], proba[use], threshold=card.threshold, n_boot=config.n_boot, seed=0)
        n_skipped = int((~np.isfinite(proba).all(axis=1)).sum())
    summary = {"run_id": card.run_id, "data": str(data) if data is not None else None, "cache": config.cache,
               "split": config.split, "engine": engine or None, "n": int(use.sum()),
               "n_skipped": n_skipped, "task": card.task.kind,
               "classes": card.classes, "threshold": card.threshold, "metrics": metrics,
               "run_metrics": card.metrics.get("test")}
    return metrics, str(write_metrics(out, summary))
