"""Successive halving over backbones: pay the full extraction only for the ones worth it.

Each round extracts the candidates still in the race on a patient-grouped, stratified subset of train+val (one
decode per image feeds every candidate), sweeps the head on the subset's train rows and ranks by val AUROC with
bootstrap intervals (`studies.screen_rounds` decides who is dropped), then doubles the subset. Extraction goes
through the cache's own staging area (`<CACHE>.parts/`): each round stages only rows its candidates have not
forwarded yet, and the survivors' final extraction on all rows resumes from what the rounds staged, so no image
passes twice through one backbone with one preprocessing. Publishing writes only the survivors' sets; the losers'
staged rows are dropped with the staging area. `CACHE.screen.json` records every round.

Multi-label data races the same way under a label policy (`uncertain`, `blank`, as `heads` takes them): subsets
are stratified by each finding's known positives and by split, and candidates are ranked by val macro AUROC over
the findings (with the patient-resampled interval the task's records give it, `MultilabelTask.evaluate`).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from headstart.backbones.weights import rebuild_attrs
from headstart.cache.reader import FeatureCache
from headstart.cache.writer import CacheWriter
from headstart.data.dataset import build_dataset
from headstart.data.types import Dataset
from headstart.device import autocast_dtype, resolve_device
from headstart.distributed import env_info
from headstart.errors import CacheError, ConfigError, DataError
from headstart.evaluation.bootstrap import bootstrap_ci
from headstart.evaluation.records import jsonable
from headstart.evaluation.selection import best_index, val_score
from headstart.evaluation.timing import Timer
from headstart.extract.config import ExtractConfig
from headstart.extract.features import build_feature_models
from headstart.extract.pipeline import start_engines
from headstart.extract.runner import extract_rows, samples_table
from headstart.extract.sets import feature_spec
from headstart.heads import SWEEP_NAMES
from headstart.heads.fitting import FitSettings, Rows, run_sweep
from headstart.heads.registry import names as head_names
from headstart.heads.sweep import get_sweep
from headstart.heads.labels import TaskLabels, task_labels
from headstart.io import write_bytes_atomic
from headstart.studies.screen_rounds import Standing, decide, grow_subset, round_sizes
from headstart.versions import collect_versions

log = logging.getLogger(__name__)

SCREEN_SUFFIX = ".screen.json"  # CACHE.screen.json, next to the cache as its staging folder and lock are
SCREEN_FORMAT = "headstart-screen"


@dataclass
class ScreenConfig:
    """What `headstart screen` runs: every `extract` option (the candidates are `extract.backbones`) and the race."""

    extract: ExtractConfig = field(default_factory=ExtractConfig)  # same meaning as for `headstart extract`
    keep: int = 1  # survivors extracted on all rows
    head: str = "logreg"  # the head whose quick sweep ranks the candidates
    sweep: str = "quick"  # its grid
    fraction: float = 0.1  # round 1's share of train+val
    min_images: int = 200  # round 1 sees at least this many images (or all of train+val)
    n_boot: int = 1000  # bootstrap resamples behind each val AUROC interval
    uncertain: str | list[str] = "ignore"  # multi-label data: how uncertain labels train (as `heads --uncertain`)
    blank: str = "negative"  # multi-label data: a blank is a negative or unknown (as `heads --blank`)

    def validate(self) -> None:
        self.extract.validate()
        checks = [
            (self.keep >= 1, f"--keep {self.keep} is invalid; expected at least 1"),
            (self.head in head_names(), f"--head {self.head!r} is unknown; expected one of {', '.join(head_names())}"),
            (self.sweep in SWEEP_NAMES, f"sweep {self.sweep!r} is unknown; expected one of {', '.join(SWEEP_NAMES)}"),
            (0 < self.fraction <= 1, f"fraction {self.fraction} is invalid; expected a share of train+val in (0, 1]"),
            (self.min_images >= 1, f"min_images {self.min_images} is invalid; expected at least 1"),
            (self.n_boot >= 1, f"n_boot {self.n_boot} is invalid; expected at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


@dataclass
class ScreenResult:
    cache_path: Path
    screen_path: Path  # CACHE.screen.json
    survivors: list[str]
    document: dict


@dataclass
class _Race:
    """What every round shares: the data set, the candidates, their cache specs and the pool of train+val rows."""

    config: ScreenConfig
    out: Path
    dataset: Dataset
    table: object  # the cache's SamplesTable
    backbones: dict  # name -> FeatureModel (the backbone with its engine)
    specs: dict  # name -> FeatureSetSpec
    device: object
    pool: np.ndarray  # cache rows of train and val
    labels: TaskLabels | None = None  # the task and its per-row targets (multi-label: training and scored ones)
    seconds: dict = field(default_factory=dict)  # name -> extraction seconds spent on it so far


def screen_path(cache: str | Path) -> Path:
    cache = Path(cache)
    return cache.with_name(cache.name + SCREEN_SUFFIX)


def run_screen(*, data: str, output: str | Path, config: ScreenConfig) -> ScreenResult:
    """Race `config.extract.backbones` on growing subsets, extract the survivors fully into `output`."""
    config.validate()
    if env_info().distributed:
        raise ConfigError("screen runs in one process; start it without torchrun (its final extraction is an "
                          "ordinary `headstart extract`, which torchrun can run for the survivors)")
    ex = config.extract
    out = Path(output)
    if out.is_dir():
        raise DataError(f"output {out} is a directory; expected a cache file path such as {out / 'features.h5'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    device = resolve_device(ex.device)
    built = build_feature_models(ex.backbones, weights=ex.weights, image_size=ex.image_size, seed=ex.seed,
                                 trust_remote_code=ex.trust_remote_code, crop=ex.crop)  # each candidate's own feature, one set
    backbones = {m.name: m for m in built}  # by full name (with provider prefix), as the feature sets are named
    dataset = build_dataset(data, split_config=ex.split, find_duplicates=True, source_options=ex.source)
    table = samples_table(dataset, data=data, config=ex)
    labels = task_labels(table, config)  # the table holds what a cache holds: task, classes, labels, label_matrix
    # each candidate's engine, as `extract` picks it: onnxruntime is checked on the data set's first real images
    # before any set is named after it, and falls back to torch (one warning line) when it disagrees
    start_engines(built, dataset, spec=ex.engine, device=device, amp_dtype=autocast_dtype(ex.precision, device))
    specs = {m.name: feature_spec(m.backbone, m.outputs[0], m.engine.name, table=table, dtype=ex.feature_dtype,
                                  decode=ex.decode, precision=m.engine.describe()["precision"],
                                  random_state=rebuild_attrs(m.backbone, seed=ex.seed)) for m in built}
    pool = np.flatnonzero(np.isin(np.asarray(table.splits), ["train", "val"]))
    race = _Race(config, out, dataset, table, backbones, specs, device, pool, labels=labels,
                 seconds={name: 0.0 for name in backbones})

    with Timer(device=device) as timer:
        rounds, survivors = _rounds(race)
        final_seconds, _ = _extract(race, survivors, rows=None)
    document = {
        "format": SCREEN_FORMAT, "format_version": 1, "cache": str(out), "candidates": list(backbones),
        "keep": config.keep, "head": config.head, "rounds": rounds, "survivors": survivors,
        "task": labels.task.kind, "metric": "macro auroc" if labels.task.kind == "multilabel" else "auroc",
        "extract_seconds": race.seconds, "final_extract_seconds": final_seconds,
        "timing": {"seconds": timer.seconds}, "config": asdict(config),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": collect_versions(),
    }
    target = screen_path(out)
    write_bytes_atomic(target, (json.dumps(jsonable(document), indent=1, sort_keys=True, allow_nan=False) + "\n")
                       .encode("utf-8"))
    log.info("screen: %s survive of %s; wrote %s and %s", ", ".join(survivors), ", ".join(ex.backbones), out, target)
    return ScreenResult(out, target, survivors, document)


def _rounds(race: _Race) -> tuple[list[dict], list[str]]:
    config, table = race.config, race.table
    alive = list(race.backbones)
    ids = np.asarray(table.ids, dtype=object)[race.pool]
    is_val = (np.asarray(table.splits)[race.pool] == "val").astype(np.int64)
    strata = _strata(race.labels, race.pool, is_val)
    groups = np.asarray(table.groups, dtype=object)[race.pool]
    have = np.zeros(0, dtype=np.int64)
    rounds: list[dict] = []
    for i, target in enumerate(round_sizes(len(race.pool), fraction=config.fraction, min_images=config.min_images)):
        if len(alive) <= config.keep:
            break
        have = grow_subset(ids, strata, groups, have=have, target=target, seed=config.extract.seed, round_index=i)
        rows = race.pool[have]
        spent, features = _extract(race, alive, rows=rows)
        standings, results = _rank(race, alive, rows, spent, features)
        final = len(have) >= len(race.pool)
        alive, dropped = decide(standings, keep=config.keep, final=final)
        rounds.append({"round": i + 1, "n_images": int(len(rows)), "results": results, "dropped": dropped,
                       "survivors": list(alive)})
        log.info("screen round %d on %d images: %s", i + 1, len(rows),
                 "; ".join(f"{r['backbone']} {r['val_auroc']:.3f}" for r in results))
    return rounds, alive


def _strata(labels: TaskLabels, pool: np.ndarray, is_val: np.ndarray) -> np.ndarray:
    """The subsets' stratification key: class x split (N,), or multi-label an (N, 2 (L + 1)) count matrix of
    each finding's known positives and of rows with none, x split (data.sampling.strata_counts)."""
    if labels.task.kind != "multilabel":
        return np.asarray(labels.y)[pool] * 2 + is_val
    positive = (np.asarray(labels.y)[pool] == 1) & np.asarray(labels.mask)[pool]
    key = np.column_stack([positive, ~positive.any(axis=1)]).astype(np.int64)
    return np.column_stack([key * (1 - is_val)[:, None], key * is_val[:, None]])


def _extract(race: _Race, names: list[str], *, rows: np.ndarray | None) -> tuple[dict[str, float], dict | None]:
    """Stage `rows` for `names`, skipping rows already staged; (seconds per name, their (X, valid) on `rows`).

    `rows` None: every row of the cache, then publish `names` (the survivors) and drop the staging area.
    """
    ex = race.config.extract
    spent = {name: 0.0 for name in names}
    with CacheWriter(race.out, race.table, [race.specs[n] for n in names], overwrite=ex.overwrite) as writer:
        todo = [name for name in names if name in writer.todo]  # a set already complete in CACHE is read from it
        wanted = np.zeros(len(race.table), dtype=bool)
        wanted[slice(None) if rows is None else rows] = True
        needed = np.flatnonzero(wanted & ~writer.done_mask()) if todo else np.zeros(0, dtype=np.int64)
        skipped: list[str] = []
        if len(needed):
            shard = extract_rows(needed, writer=writer, dataset=race.dataset,
                                 models=[race.backbones[n] for n in todo], device=race.device, config=ex)
            shared = max(0.0, shard.seconds - sum(shard.forward_seconds.values())) / len(todo)
            for name in todo:  # its own forward time plus an equal share of decoding and staging
                spent[name] = shard.forward_seconds[name] + shared
                race.seconds[name] += spent[name]
            skipped = shard.skipped
        if rows is None:
            writer.finish(stats=_stats(race, todo), skipped=skipped)
            return spent, None
        return spent, _subset_features(race, writer, names, rows)


def _stats(race: _Race, names: list[str]) -> dict[str, dict]:
    """What the published sets record: the seconds the screen spent on them over every round and the finish."""
    ex, n = race.config.extract, len(race.table)
    return {name: {"device": str(race.device), "seconds": race.seconds[name],
                   "images_per_second": n / race.seconds[name] if race.seconds[name] > 0 else 0.0,
                   "batch_size": ex.batch_size, "versions": collect_versions(), "screened": True,
                   **race.backbones[name].engine.describe(),  # engine, its version, precision
                   **rebuild_attrs(race.backbones[name].backbone, seed=ex.seed)}  # as extract: `predict` rebuilds from them
            for name in names}


def _rank(race: _Race, names: list[str], rows: np.ndarray, spent: dict[str, float],
          features: dict) -> tuple[list[Standing], list]:
    """Sweep the head on each candidate's subset features; val AUROC of the selected config, with its interval."""
    config, table, task_rows = race.config, race.table, race.labels
    split = np.asarray(table.splits)[rows]
    ids, groups = np.asarray(table.ids, dtype=object)[rows], np.asarray(table.groups, dtype=object)[rows]
    fit = FitSettings(grid=get_sweep(config.sweep), class_weight="balanced", task=task_rows.task, device=race.device)
    standings, results = [], []
    for name in names:
        X, valid = features[name]
        parts = {s: _part(task_rows, X, rows, m, ids, groups, s) for s in ("train", "val")
                 for m in [(split == s) & valid]}
        _require_both_classes(fit.task, parts, len(rows))
        sweep = run_sweep(config.head, parts, fit=fit, seed=config.extract.seed)
        scores = [val_score(parts["val"].y, c.val_proba, metric="auroc", threshold_rule="youden", task=fit.task,
                            mask=parts["val"].mask) for c in sweep.candidates]
        best = best_index(scores, metric="auroc")
        ci = _val_ci(fit.task, parts["val"], sweep.candidates[best].val_proba, n_boot=config.n_boot,
                     seed=config.extract.seed)
        standings.append(Standing(name, float(scores[best]), (float(ci[0]), float(ci[1]))))
        results.append({"backbone": name, "val_auroc": scores[best], "val_auroc_ci": ci,
                        "seconds": spent.get(name, 0.0) + sweep.seconds, "extract_seconds": spent.get(name, 0.0),
                        "head_seconds": sweep.seconds, "selected": sweep.candidates[best].params,
                        "n_train": len(parts["train"].y), "n_val": len(parts["val"].y)})
    return standings, results


def _part(labels: TaskLabels, X: np.ndarray, rows: np.ndarray, m: np.ndarray, ids: np.ndarray, groups: np.ndarray,
          split: str) -> Rows:
    """One split of a round's subset: train rows with the training targets (and mask), val rows with the scored
    ones (multi-label: never an uncertain label), as `heads` reads them."""
    y, mask = (labels.y, labels.mask) if split == "train" else (labels.eval_y, labels.eval_mask)
    y = np.asarray(y)[rows]
    return Rows(X[m], y[m], ids[m], groups[m], mask=None if mask is None else np.asarray(mask)[rows][m])


def _require_both_classes(task, parts: dict[str, Rows], n_rows: int) -> None:
    if task.kind == "multilabel":
        val = parts["val"]
        scorable = (((val.y == 1) & val.mask).any(axis=0) & ((val.y == 0) & val.mask).any(axis=0)).any()
        if task.trainable(parts["train"].y, parts["train"].mask).any() and scorable:
            return
        what = "no finding with both classes in its train or val rows"
    elif len(np.unique(parts["train"].y)) >= 2 and len(np.unique(parts["val"].y)) >= 2:
        return
    else:
        what = "a class missing from its train or val rows"
    raise DataError(f"a screening subset of {n_rows} images has {what}; raise --min-images or the val fraction so "
                    f"every round sees every class in both")


def _val_ci(task, val: Rows, proba: np.ndarray, *, n_boot: int, seed: int) -> list[float]:
    """The 95% interval of the selected config's val AUROC (multi-label: of the macro over the findings, as a
    record's `metrics.val.auroc_ci`, resampling patients)."""
    if task.kind == "multilabel":
        return task.evaluate(val.y, proba, threshold=None, n_boot=n_boot, seed=seed, mask=val.mask,
                             groups=val.groups)["auroc_ci"]
    return bootstrap_ci(val.y, proba, threshold=None, metrics=("auroc",), n_boot=n_boot, seed=seed)["auroc"]


def _subset_features(race: _Race, writer: CacheWriter, names: list[str], rows: np.ndarray) -> dict:
    """(X, valid) of `rows` per name: from the sets being written, or from CACHE for a set already complete there."""
    out = {}
    for name in names:
        if name in writer.todo:
            X, valid = writer.read_rows(name, rows)
            out[name] = (X.astype(np.float32), valid)
            continue
        with FeatureCache(race.out) as cache:  # complete in CACHE before the screen started
            if name not in cache.feature_sets or not cache.feature_sets[name]["complete"]:
                raise CacheError(f"screening rows of {name} are neither being written nor in {race.out}; rerun "
                                 f"the same command")
            X, valid = cache.load(name)
            out[name] = (X[rows], valid[rows])
    return out


def screen_table(document: dict) -> str:
    """The printed summary: one line per round and candidate, then the survivors."""
    lines = []
    metric = "val macro AUROC" if document.get("task") == "multilabel" else "val AUROC"
    for entry in document["rounds"]:
        lines.append(f"round {entry['round']}: {entry['n_images']} images")
        dropped = {d["backbone"]: d["reason"] for d in entry["dropped"]}
        for r in sorted(entry["results"], key=lambda r: -r["val_auroc"] if math.isfinite(r["val_auroc"]) else 0):
            ci = r["val_auroc_ci"]
            fate = f"dropped: {dropped[r['backbone']]}" if r["backbone"] in dropped else "continues"
            lines.append(f"  {r['backbone']:<24} {metric} {r['val_auroc']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]  "
                         f"{r['seconds']:7.1f} s  {fate}")
    lines.append(f"survivors: {', '.join(document['survivors'])} (extracted on all rows into {document['cache']})")
    return "\n".join(lines)
