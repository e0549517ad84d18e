"""Stage two end to end: sweep every head on a cached feature set, select on val, freeze a threshold, test once.

For each feature set x head x seed:
1. fit every config of the grid on train (rows whose image failed extraction, valid=False, are dropped);
2. score each on val and keep the best by `select_metric` (binary threshold-dependent metrics are scored at
   that config's own val-chosen threshold);
3. choose the decision threshold on val with `threshold_rule` and freeze it;
4. evaluate on test exactly once, with bootstrap intervals, and write one run record.
With an empty val split, step 2 uses out-of-fold predictions of a 5-fold cross-validation on train (grouped by
patient, stratified), and steps 3-4 use the selected config fitted again on train minus a held-out fifth: the
threshold is chosen on that model's predictions of the fifth, and that model is tested and saved
(heads.fitting.applied_model).
Steps 3-4 are `evaluation.finish.finish_run`, the same code that finishes a fine-tune. The selected head is
saved next to its record (heads.persist: head.json + head.safetensors), for `headstart predict` and `export`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from headstart.cache.reader import FeatureCache
from headstart.data.balance import class_weight_mode
from headstart.device import head_precision, resolve_device
from headstart.errors import CacheError, ConfigError, DataError
from headstart.evaluation import SELECT_METRICS
from headstart.evaluation.finish import FinalEvaluation, RunOutline, SplitPredictions, finish_run
from headstart.evaluation.records import RunRecord, make_run_id
from headstart.evaluation.selection import best_index
from headstart.evaluation.thresholds import parse_threshold_rule
from headstart.evaluation.timing import reset_peak_memory
from headstart.heads import HEADS, SWEEP_NAMES
from headstart.heads.fitting import Candidate, FitSettings, Rows, Sweep, applied_model, run_sweeps
from headstart.heads.persist import feature_set_spec, save_head, task_head_info
from headstart.heads.registry import get_head
from headstart.heads.registry import names as head_names
from headstart.heads.sweep import get_sweep
from headstart.heads.views import SWITCH, attach_views, for_head, tta_proba, variant
from headstart.precision import HEAD_PRECISIONS
from headstart.data.label_policy import BLANK_RULES, policy_variant
from headstart.heads.labels import TaskLabels, task_labels
from headstart.tasks.core import Task
from headstart.tasks.factory import task_for_classes

log = logging.getLogger(__name__)

COMPACT_ROWS = 4096  # rows moved per block when train is compacted in place (_split_rows)


@dataclass
class HeadsConfig:
    """What `headstart heads` runs; the CLI options map one to one onto these fields."""

    feature_sets: list[str] | None = None  # names under /features; None = every complete set in the cache
    heads: list[str] = field(default_factory=lambda: list(HEADS))  # any of logreg, linear, mlp, knn (registry)
    sweep: str = "default"  # named grid, see headstart.heads.sweep.SWEEPS
    seeds: int = 1  # seeds 0..N-1; the console summary reports mean ± std over them
    select_metric: str = "auroc"  # val metric that picks the config (see SELECT_METRICS)
    threshold_rule: str = "youden"  # how the binary threshold is chosen on val, e.g. sensitivity:0.9
    class_weight: str = "balanced"  # "balanced" reweights the loss by inverse class frequency; "none" does not
    device: str = "auto"  # torch heads' device: auto (CUDA when present), cpu, cuda[:i]
    # torch heads' training steps: auto = bf16 autocast where the device has native bf16 (device.head_precision:
    # the MLP sweep 9.5 s -> 6.6 s on the real cache, same selections within 0.0003 val AUROC), else fp32
    precision: str = "auto"
    n_boot: int = 1000  # bootstrap resamples behind each 95% interval
    views: str = "off"  # on: train on the cached augmented views (extract --views K; heads.views)
    tta: str = "off"  # on: average probabilities over the plain and the cached test-time views (extract --tta M)
    # multi-label caches only (data.label_policy): how uncertain labels train (ignore | zeros | ones, or
    # POLICY:A,B per finding; several specs apply in order) and whether a blank is a negative or unknown
    uncertain: str | list[str] = "ignore"
    blank: str = "negative"

    def validate(self) -> None:
        """Fail before any training on a value that would fail later."""
        unknown = [h for h in self.heads if h not in head_names()]
        if unknown or not self.heads:
            raise ConfigError(f"unknown head {', '.join(unknown) or '(none given)'}; expected one or more of "
                              f"{', '.join(head_names())}")
        if self.select_metric not in SELECT_METRICS:
            raise ConfigError(f"unknown select metric {self.select_metric!r}; expected one of {', '.join(SELECT_METRICS)}")
        if self.sweep not in SWEEP_NAMES:
            raise ConfigError(f"unknown sweep {self.sweep!r}; expected one of {', '.join(SWEEP_NAMES)}")
        class_weight_mode(self.class_weight)
        if self.precision not in HEAD_PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; expected one of {', '.join(HEAD_PRECISIONS)}")
        if self.seeds < 1:
            raise ConfigError(f"seeds is {self.seeds}; expected at least 1")
        if self.n_boot < 1:
            raise ConfigError(f"n_boot is {self.n_boot}; expected at least 1")
        parse_threshold_rule(self.threshold_rule)
        for option in ("views", "tta"):
            if getattr(self, option) not in SWITCH:
                raise ConfigError(f"--{option} {getattr(self, option)!r} is invalid; expected on or off")
        if self.blank not in BLANK_RULES:
            raise ConfigError(f"--blank {self.blank!r} is invalid; expected {' or '.join(BLANK_RULES)}")


@dataclass
class _Job:
    """One feature set's rows and everything its runs share: the options, the fit settings, where records go."""

    config: HeadsConfig
    fit: FitSettings
    runs_dir: str | Path
    feature_set: str  # name under /features
    meta: dict  # the feature set's attributes: backbone, weights, extraction seconds and rate
    splits: dict[str, Rows]
    dataset: dict  # the records' dataset block: manifest hash, classes, task (+ labels), cache path
    policy: dict | None = None  # multi-label: the uncertainty / blank policy, as the record's config names it


def run_heads(*, cache_path: str | Path, runs_dir: str | Path, config: HeadsConfig,
              progress: bool = True) -> list[RunRecord]:
    """Run the sweep for every feature set x head x seed; write and return one record per run."""
    config.validate()
    grid = get_sweep(config.sweep)
    device = resolve_device(config.device)
    records: list[RunRecord] = []
    with FeatureCache(cache_path) as cache:
        names = _feature_set_names(cache, config.feature_sets)
        labels = task_labels(cache, config)
        fit = FitSettings(grid=grid, class_weight=class_weight_mode(config.class_weight), task=labels.task,
                          device=device, precision=head_precision(config.precision, device))
        total = len(names) * config.seeds * sum(grid.size(h) for h in config.heads)
        with tqdm(total=total, desc="heads", unit="config", disable=None if progress else True) as bar:
            for name in names:
                job = _load_job(cache, name, config=config, fit=fit, runs_dir=runs_dir, labels=labels)
                for head in config.heads:
                    bar.set_postfix_str(f"{name}/{head} x {config.seeds} seeds")
                    reset_peak_memory(device)
                    # every seed in one call: torch heads batch their seeds, logreg and kNN fit once for all
                    head_job = dataclasses.replace(job, splits=for_head(head, job.splits))  # views: heads.views
                    sweeps = run_sweeps(head, head_job.splits, fit=fit, seeds=range(config.seeds))
                    for seed, sweep in enumerate(sweeps):
                        reused = seed > 0 and not get_head(head).seeded and sweep.selection == "val"
                        records.append(_select_and_test(head_job, sweep, head=head, seed=seed, reused=reused))
                        bar.update(grid.size(head))
    return records


def _feature_set_names(cache: FeatureCache, requested: list[str] | None) -> list[str]:
    if requested:
        for name in requested:
            meta = cache.feature_sets.get(name)
            if meta is None or not meta["complete"]:
                cache.load(name)  # raises the reader's one-line error: lists the sets, or says to rerun extract
        return list(dict.fromkeys(requested))
    names = [n for n, meta in cache.feature_sets.items() if meta["complete"]]
    if not names:
        have = ", ".join(f"{n} (incomplete)" for n in cache.feature_sets) or "none"
        raise CacheError(f"{cache.path} has no complete feature set (found: {have}); run or finish `headstart extract`")
    return names


def _load_job(cache: FeatureCache, name: str, *, config: HeadsConfig, fit: FitSettings,
              runs_dir: str | Path, labels: TaskLabels | None = None) -> _Job:
    labels = labels or task_labels(cache, config)
    X, valid = cache.load(name)
    splits = _split_rows(cache, X, valid, labels)
    _check_splits(splits, name, cache.path, labels.task)
    splits = attach_views(cache, name, splits, valid, views=config.views == "on", tta=config.tta == "on")
    dataset = {"manifest_hash": cache.root_attrs.get("manifest_hash"), "classes": list(cache.classes),
               "task": labels.task.kind, "cache": str(cache.path)}
    if labels.policy is not None:
        dataset["labels"] = list(labels.task.names)
    return _Job(config=config, fit=fit, runs_dir=runs_dir, feature_set=name, meta=cache.feature_sets[name],
                splits=splits, dataset=dataset, policy=labels.policy)


def _split_rows(cache: FeatureCache, X: np.ndarray, valid: np.ndarray,
                labels: TaskLabels | None = None) -> dict[str, Rows]:
    """Each split's usable rows. val and test are copied out, and train is compacted into the front of X (which
    `load` made for this call alone) in place, block by block, so the feature matrix is never held twice: the
    peak is about 1.3 copies, not 2, and afterwards one (issue 13's memory target; benchmarks/memory.py)."""
    index = {s: np.flatnonzero((cache.splits == s) & valid) for s in ("train", "val", "test")}
    rows = {s: X[index[s]] for s in ("val", "test")}
    train = index["train"]
    for start in range(0, len(train), COMPACT_ROWS):  # ascending, so train[k] >= k: no block overwrites a row
        stop = min(start + COMPACT_ROWS, len(train))  # that a later block still reads
        X[start:stop] = X[train[start:stop]]
    X.resize((len(train), X.shape[1]), refcheck=False)  # hands the tail back: the matrix is held once, not 1.3x
    rows["train"] = X
    out = {}
    for s in ("train", "val", "test"):
        if labels is None:  # single-label: the cache's class indices, all known
            y, mask = cache.labels, None
        else:
            y, mask = (labels.y, labels.mask) if s == "train" else (labels.eval_y, labels.eval_mask)
        out[s] = Rows(rows[s], y[index[s]], cache.ids[index[s]], cache.groups[index[s]],
                      mask=None if mask is None else mask[index[s]])
    return out


def _check_splits(splits: dict[str, Rows], name: str, path: Path, task: Task | None = None) -> None:
    train, test = splits["train"], splits["test"]
    if len(train.y) == 0 or len(test.y) == 0:
        empty = "train" if len(train.y) == 0 else "test"
        raise DataError(f"feature set '{name}' in {path} has no usable {empty} rows; expected train and test rows, "
                        f"re-extract with a {empty} split")
    if task is not None and task.kind == "multilabel":
        if not task.trainable(train.y, train.mask).any():  # warns once per finding it leaves out
            raise DataError(f"no finding of {path} has both a positive and a negative label among the train rows; "
                            f"a head needs at least one such finding, check the labels and --uncertain/--blank")
        return
    if len(np.unique(train.y)) < 2:
        raise DataError(f"the train split of {path} has only class {int(train.y[0])}; a head needs at least two "
                        f"classes to learn, check the labels")


def _select_and_test(job: _Job, sweep: Sweep, *, head: str, seed: int, reused: bool) -> RunRecord:
    """Select the config on val (or out of fold), take the model to apply, then finish the run as every strategy
    does: the threshold is chosen on the applied model's own val (or held-out) predictions."""
    config, fit, test = job.config, job.fit, job.splits["test"]
    scores = [fit.task.score(sweep.select_rows.y, c.val_proba, metric=config.select_metric,
                             threshold_rule=config.threshold_rule, mask=sweep.select_rows.mask)
              for c in sweep.candidates]
    best = best_index(scores, metric=config.select_metric)
    applied = applied_model(head, sweep, sweep.candidates[best], job.splits["train"], fit=fit, seed=seed)
    cand, val = applied.candidate, applied.rows
    train_seconds, estimator = sweep.seconds + applied.seconds, cand.estimator
    if config.tta == "on" and val.tta is None:
        raise ConfigError("--tta on chooses the threshold on val's test-time views, and val is empty here (the "
                          "threshold rows are carved from train); extract with a val split, or use --tta off")

    def predict() -> dict[str, SplitPredictions]:  # the candidate remembers its test scores across seeds
        val_p = tta_proba(estimator, val, fit.n_classes, cand.val_proba)  # --tta on: plain + M views averaged
        test_p = tta_proba(estimator, test, fit.n_classes, cand.proba(test.X, fit.n_classes))
        return {"val": SplitPredictions(val.ids, val.y, val_p, val.groups, val.mask),
                "test": SplitPredictions(test.ids, test.y, test_p, test.groups, test.mask)}

    outline = RunOutline(
        run_id=make_run_id("cached-head", job.feature_set, head, seed,
                           variant="-".join(filter(None, (variant(config.views, config.tta),
                                                          policy_variant(job.policy)))) or None),
        strategy="cached-head",
        backbone=str(job.meta.get("backbone") or job.feature_set), head=head, seed=seed,
        config=_record_config(job, sweep, cand, scores, head=head, reused=reused), dataset=job.dataset,
        history=cand.history,
        timing={"train_seconds": train_seconds, "extract_seconds": job.meta.get("seconds"),
                "images_per_second": job.meta.get("images_per_second")},
    )
    final = FinalEvaluation(threshold_rule=config.threshold_rule, n_boot=config.n_boot,
                            device=fit.device if get_head(head).on_device else "cpu", task=fit.task)
    record = finish_run(predict, outline=outline, final=final, runs_dir=job.runs_dir)
    spec = feature_set_spec(job.feature_set, job.meta, manifest_hash=job.dataset["manifest_hash"],
                            cache=job.dataset["cache"])
    save_head(Path(job.runs_dir) / record.run_id, estimator, classes=job.dataset["classes"],
              threshold=record.threshold, feature_set=spec,
              extra={"run_id": record.run_id, "views": config.views, "tta": config.tta,
                     **({"tta_views": int(test.tta.shape[1])} if test.tta is not None else {}),
                     **task_head_info(fit.task, estimator, job.policy)})
    log.info("%s/%s seed %d: %s on %s %.4f, test %sAUROC %s (%d configs, %.2f s)", job.feature_set, head, seed,
             config.select_metric, sweep.selection, scores[best], "macro " if job.policy else "",
             _fmt(record.metrics["test"]["auroc"]), len(scores), train_seconds)
    return record


def _record_config(job: _Job, sweep: Sweep, cand: Candidate, scores: list[float], *, head: str,
                   reused: bool) -> dict:
    """The record's `config`: the selected hyperparameters, the options, and every config's val score."""
    config, kind = job.config, get_head(head)
    hyper = {**cand.params, **kind.record_hyper(cand, job.fit)}
    return {
        **hyper,
        "feature_set": job.feature_set,
        "weights": job.meta.get("weights"),
        # the backbone's cost, as extraction stamped it (torchvision backbones); the report labels points with it
        "gflops": float(job.meta["gflops"]) if job.meta.get("gflops") is not None else None,
        "sweep": job.fit.grid.name,
        "grid_size": len(sweep.candidates),
        "select_metric": config.select_metric,
        "threshold_rule": job.fit.task.record_rule(config.threshold_rule),
        "class_weight": config.class_weight,
        "selection": sweep.selection,
        # multi-label CV: the findings whose out-of-fold columns scored the configs, and why the others did not
        **({"selection_findings": sweep.findings} if sweep.findings is not None else {}),
        "fit_shared_across_seeds": reused or (not kind.seeded and sweep.selection == "val"),
        "sweep_scores": [{**c.params, config.select_metric: s} for c, s in zip(sweep.candidates, scores)],
        "views": config.views,  # heads --views: torch heads sample a view per row and epoch, the others the mean
        "tta": config.tta,  # heads --tta: val and test probabilities averaged over the plain + M test-time views
        # multi-label: uncertain, blank, uncertain_per_label (compare names the policy; docs/guide/multilabel.md)
        **({"label_policy": job.policy} if job.policy else {}),
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.4f}"
