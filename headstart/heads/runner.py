"""Stage two end to end: sweep every head on a cached feature set, select on val, freeze a threshold, test once.

For each feature set x head x seed:
1. fit every config of the grid on train (rows whose image failed extraction, valid=False, are dropped);
2. score each on val and keep the best by `select_metric` (binary threshold-dependent metrics are scored at
   that config's own val-chosen threshold);
3. choose the decision threshold on val with `threshold_rule` and freeze it;
4. evaluate on test exactly once, with bootstrap intervals, and write one run record.
With an empty val split, steps 2-3 use out-of-fold predictions of a 5-fold (grouped where patients are known)
stratified cross-validation on train, and the selected config is refitted on all of train.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from tqdm.auto import tqdm

from headstart.cache.reader import FeatureCache
from headstart.device import resolve_device
from headstart.errors import CacheError, ConfigError, DataError
from headstart.evaluation import SELECT_METRICS
from headstart.evaluation.bootstrap import evaluate
from headstart.evaluation.metrics import compute_metrics
from headstart.evaluation.records import RunRecord, make_run_id, write_record
from headstart.evaluation.thresholds import choose_threshold, parse_threshold_rule
from headstart.evaluation.timing import Timer, describe_device, peak_memory_mb, reset_peak_memory
from headstart.heads.batched import train_batched
from headstart.heads.knn import KNNHead, knn_sweep
from headstart.heads.logreg import LogRegHead, fit_logreg_path
from headstart.heads.sweep import HEADS, SWEEPS, SweepGrid, get_sweep, torch_configs
from headstart.heads.torch_heads import LinearHead, MLPHead

log = logging.getLogger(__name__)

CV_FOLDS = 5  # folds of the cross-validation that replaces an empty val split
_DETERMINISTIC = ("logreg", "knn")  # heads whose fit ignores the seed: one sweep serves every seed


@dataclass
class HeadsConfig:
    """What `headstart heads` runs; the CLI options map one to one onto these fields."""

    feature_sets: list[str] | None = None  # names under /features; None = every complete set in the cache
    heads: list[str] = field(default_factory=lambda: list(HEADS))  # any of logreg, linear, mlp, knn
    sweep: str = "default"  # named grid, see headstart.heads.sweep.SWEEPS
    seeds: int = 1  # seeds 0..N-1; the console summary reports mean ± std over them
    select_metric: str = "auroc"  # val metric that picks the config (see SELECT_METRICS)
    threshold_rule: str = "youden"  # how the binary threshold is chosen on val, e.g. sensitivity:0.9
    class_weight: str = "balanced"  # "balanced" reweights the loss by inverse class frequency; "none" does not
    device: str = "auto"  # torch heads' device: auto (CUDA when present), cpu, cuda[:i]
    n_boot: int = 1000  # bootstrap resamples behind each 95% interval

    def validate(self) -> None:
        """Fail before any training on a value that would fail later."""
        unknown = [h for h in self.heads if h not in HEADS]
        if unknown or not self.heads:
            raise ConfigError(f"unknown head {', '.join(unknown) or '(none given)'}; expected one or more of {', '.join(HEADS)}")
        if self.select_metric not in SELECT_METRICS:
            raise ConfigError(f"unknown select metric {self.select_metric!r}; expected one of {', '.join(SELECT_METRICS)}")
        if self.sweep not in SWEEPS:
            raise ConfigError(f"unknown sweep {self.sweep!r}; expected one of {', '.join(SWEEPS)}")
        if self.class_weight not in ("balanced", "none"):
            raise ConfigError(f"class weight {self.class_weight!r} is not valid; expected balanced or none")
        if self.seeds < 1:
            raise ConfigError(f"seeds is {self.seeds}; expected at least 1")
        if self.n_boot < 1:
            raise ConfigError(f"n_boot is {self.n_boot}; expected at least 1")
        parse_threshold_rule(self.threshold_rule)


@dataclass
class _Rows:
    """One split of one feature set: features, label indices and sample ids."""

    X: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    groups: np.ndarray

    def take(self, index: np.ndarray) -> _Rows:
        return _Rows(self.X[index], self.y[index], self.ids[index], self.groups[index])


@dataclass
class _Candidate:
    """One config of a sweep after fitting: its val (or out-of-fold) probabilities and, unless it must be
    refitted after cross-validation, the fitted estimator."""

    params: dict
    val_proba: np.ndarray
    estimator: object | None
    best_epoch: int | None = None
    history: list = field(default_factory=list)


@dataclass
class _Sweep:
    candidates: list[_Candidate]
    seconds: float
    selection: str  # "val" or "cv-<k>fold"
    select_rows: _Rows  # rows the candidates' val_proba belong to


def run_heads(*, cache_path: str | Path, runs_dir: str | Path, config: HeadsConfig,
              progress: bool = True) -> list[RunRecord]:
    """Run the sweep for every feature set x head x seed; write and return one record per run."""
    config.validate()
    grid = get_sweep(config.sweep)
    device = resolve_device(config.device)
    records: list[RunRecord] = []
    with FeatureCache(cache_path) as cache:
        names = _feature_set_names(cache, config.feature_sets)
        n_classes = len(cache.classes)
        total = len(names) * config.seeds * sum(grid.size(h) for h in config.heads)
        with tqdm(total=total, desc="heads", unit="config", disable=None if progress else True) as bar:
            for name in names:
                X, valid = cache.load(name)
                meta = cache.feature_sets[name]
                splits = {s: _rows(cache, X, valid, s) for s in ("train", "val", "test")}
                _check_splits(splits, name, cache.path)
                shared: dict[str, _Sweep] = {}
                for head in config.heads:
                    for seed in range(config.seeds):
                        bar.set_postfix_str(f"{name}/{head} seed {seed}")
                        reset_peak_memory(device)
                        sweep = shared.get(head)
                        reused = sweep is not None
                        if sweep is None:
                            sweep = _run_sweep(head, splits, grid=grid, config=config, n_classes=n_classes,
                                               device=device, seed=seed)
                            if head in _DETERMINISTIC and sweep.selection == "val":
                                shared[head] = sweep
                        record = _select_and_test(
                            sweep, splits, head=head, seed=seed, grid=grid, config=config, n_classes=n_classes,
                            device=device, feature_set=name, meta=meta, cache=cache, reused=reused,
                        )
                        write_record(runs_dir, record)
                        records.append(record)
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


def _rows(cache: FeatureCache, X: np.ndarray, valid: np.ndarray, split: str) -> _Rows:
    keep = (cache.splits == split) & valid
    return _Rows(X[keep], cache.labels[keep], cache.ids[keep], cache.groups[keep])


def _check_splits(splits: dict[str, _Rows], name: str, path: Path) -> None:
    train, test = splits["train"], splits["test"]
    if len(train.y) == 0 or len(test.y) == 0:
        empty = "train" if len(train.y) == 0 else "test"
        raise DataError(f"feature set '{name}' in {path} has no usable {empty} rows; expected train and test rows, "
                        f"re-extract with a {empty} split")
    if len(np.unique(train.y)) < 2:
        raise DataError(f"the train split of {path} has only class {int(train.y[0])}; a head needs at least two "
                        f"classes to learn, check the labels")


# --- sweeps -------------------------------------------------------------------------------------------------


def _run_sweep(head: str, splits: dict[str, _Rows], *, grid: SweepGrid, config: HeadsConfig, n_classes: int,
               device, seed: int) -> _Sweep:
    train, val = splits["train"], splits["val"]
    with Timer(device=device) as timer:
        if len(val.y):
            candidates = _fit_sweep(head, train, val, grid=grid, config=config, n_classes=n_classes,
                                    device=device, seed=seed)
            selection, select_rows = "val", val
        else:
            candidates, folds = _cv_sweep(head, train, grid=grid, config=config, n_classes=n_classes,
                                          device=device, seed=seed)
            selection, select_rows = f"cv-{folds}fold", train
    return _Sweep(candidates, timer.seconds, selection, select_rows)


def _fit_sweep(head: str, train: _Rows, val: _Rows, *, grid: SweepGrid, config: HeadsConfig, n_classes: int,
               device, seed: int) -> list[_Candidate]:
    """Fit every config of `head` on train and predict val; one batched model / path / search per head."""
    params = grid.configs(head)
    class_weight = _class_weight(config)
    if head == "logreg":
        fitted = fit_logreg_path(train.X, train.y, [p["C"] for p in params], class_weight=class_weight)
        return [_Candidate(p, _full_proba(h, val.X, n_classes), h) for p, h in zip(params, fitted)]
    if head == "knn":
        fitted = knn_sweep(train.X, train.y, val.X, [p["k"] for p in params], class_weight=class_weight)
        return [_Candidate(p, _expand(proba, h.classes_, n_classes), h) for p, (h, proba) in zip(params, fitted)]
    settings = dataclasses.replace(grid.train, class_weight=class_weight)
    results = train_batched(train.X, train.y, val.X, val.y, configs=torch_configs(params), settings=settings,
                            n_classes=n_classes, device=device, seed=seed)
    return [
        _Candidate(p, r.val_proba, (MLPHead if head == "mlp" else LinearHead)._from_batched(
            r, np.arange(n_classes), settings=settings, seed=seed, device=str(device)), r.best_epoch, r.history)
        for p, r in zip(params, results)
    ]


def _cv_sweep(head: str, train: _Rows, *, grid: SweepGrid, config: HeadsConfig, n_classes: int, device,
              seed: int) -> tuple[list[_Candidate], int]:
    """Out-of-fold val probabilities for every config; estimators are refitted on all of train after selection."""
    counts = np.bincount(train.y)
    folds = min(CV_FOLDS, int(counts[counts > 0].min()))  # every fold needs each class once
    if folds < 2:
        raise DataError("val is empty and a class has only one train row, so cross-validation cannot replace it; "
                        "add a val split or more train rows of that class")
    grouped = bool(np.all(train.groups != "")) and len(np.unique(train.groups)) >= folds
    splitter = (StratifiedGroupKFold if grouped else StratifiedKFold)(n_splits=folds, shuffle=True, random_state=seed)
    log.warning("val split is empty: selecting the config and threshold by %d-fold %sstratified cross-validation "
                "on train, then refitting it on all of train", folds, "grouped " if grouped else "")
    params = grid.configs(head)
    oof = [np.zeros((len(train.y), n_classes), dtype=np.float32) for _ in params]
    epochs: list[list[int]] = [[] for _ in params]
    for fit_idx, held_idx in splitter.split(train.X, train.y, groups=train.groups if grouped else None):
        fold = _fit_sweep(head, train.take(fit_idx), train.take(held_idx), grid=grid, config=config,
                          n_classes=n_classes, device=device, seed=seed)
        for i, cand in enumerate(fold):
            oof[i][held_idx] = cand.val_proba
            if cand.best_epoch is not None:
                epochs[i].append(cand.best_epoch)
    return [_Candidate(p, proba, None, int(round(np.mean(e))) if e else None)
            for p, proba, e in zip(params, oof, epochs)], folds


def _refit(head: str, cand: _Candidate, train: _Rows, *, grid: SweepGrid, config: HeadsConfig, device,
           seed: int) -> object:
    """Fit the selected config on all of train; torch heads train for the mean early-stopped epoch of the folds."""
    class_weight = _class_weight(config)
    if head == "logreg":
        return LogRegHead(C=cand.params["C"], class_weight=class_weight).fit(train.X, train.y)
    if head == "knn":
        return KNNHead(k=cand.params["k"], class_weight=class_weight).fit(train.X, train.y)
    cls = MLPHead if head == "mlp" else LinearHead
    est = cls(**cand.params, epochs=max(1, cand.best_epoch or grid.train.epochs), batch_size=grid.train.batch_size,
              patience=grid.train.patience, class_weight=class_weight, seed=seed, device=str(device))
    return est.fit(train.X, train.y)


# --- selection, threshold, test ---------------------------------------------------------------------------


def _select_and_test(sweep: _Sweep, splits: dict[str, _Rows], *, head: str, seed: int, grid: SweepGrid,
                     config: HeadsConfig, n_classes: int, device, feature_set: str, meta: dict,
                     cache: FeatureCache, reused: bool) -> RunRecord:
    sel_rows, test = sweep.select_rows, splits["test"]
    binary = n_classes == 2
    scores = [_val_score(c.val_proba, sel_rows.y, config, binary) for c in sweep.candidates]
    best = _argbest(scores, higher=SELECT_METRICS[config.select_metric])
    cand = sweep.candidates[best]
    train_seconds = sweep.seconds
    estimator = cand.estimator
    history = cand.history
    if estimator is None:  # cross-validated selection: refit the winner on all of train
        with Timer(device=device) as refit_timer:
            estimator = _refit(head, cand, splits["train"], grid=grid, config=config, device=device, seed=seed)
        train_seconds += refit_timer.seconds
        history = getattr(estimator, "history_", [])
    threshold = choose_threshold(sel_rows.y, cand.val_proba[:, 1], rule=config.threshold_rule) if binary else None
    with Timer(device=device) as eval_timer:
        test_proba = _full_proba(estimator, test.X, n_classes)  # the one and only look at test
        metrics = {
            "val": evaluate(sel_rows.y, cand.val_proba, threshold=threshold, n_boot=config.n_boot, seed=seed),
            "test": evaluate(test.y, test_proba, threshold=threshold, n_boot=config.n_boot, seed=seed),
        }
    hyper = dict(cand.params)
    if head in ("linear", "mlp"):
        hyper.update(epochs=grid.train.epochs, batch_size=grid.train.batch_size, patience=grid.train.patience,
                     best_epoch=cand.best_epoch)
    record = RunRecord(
        run_id=make_run_id("cached-head", feature_set, head, seed),
        strategy="cached-head",
        backbone=str(meta.get("backbone") or feature_set),
        head=head,
        config={
            **hyper,
            "feature_set": feature_set,
            "weights": meta.get("weights"),
            "sweep": grid.name,
            "grid_size": len(sweep.candidates),
            "select_metric": config.select_metric,
            "threshold_rule": config.threshold_rule if binary else None,
            "class_weight": config.class_weight,
            "selection": sweep.selection,
            "fit_shared_across_seeds": reused or (head in _DETERMINISTIC and sweep.selection == "val"),
            "sweep_scores": [{**c.params, config.select_metric: s} for c, s in zip(sweep.candidates, scores)],
        },
        metrics=metrics,
        history=history,
        timing={
            "train_seconds": train_seconds,
            "eval_seconds": eval_timer.seconds,
            "extract_seconds": meta.get("seconds"),
            "images_per_second": meta.get("images_per_second"),
            "peak_memory_mb": peak_memory_mb(device),
            "device": describe_device(device) if head in ("linear", "mlp") else "cpu",
        },
        predictions={
            "val": _predictions(sel_rows, cand.val_proba),
            "test": _predictions(test, test_proba),
        },
        threshold=threshold,
        seed=seed,
        dataset={
            "manifest_hash": cache.root_attrs.get("manifest_hash"),
            "classes": list(cache.classes),
            "cache": str(cache.path),
        },
    )
    log.info("%s/%s seed %d: %s on %s %.4f, test AUROC %.4f (%d configs, %.2f s)", feature_set, head, seed,
             config.select_metric, sweep.selection, scores[best], metrics["test"]["auroc"], len(scores), train_seconds)
    return record


def _val_score(proba: np.ndarray, y: np.ndarray, config: HeadsConfig, binary: bool) -> float:
    """The select metric of one config; binary cut-dependent metrics use that config's own val threshold."""
    threshold = choose_threshold(y, proba[:, 1], rule=config.threshold_rule) if binary else None
    return float(compute_metrics(y, proba, threshold=threshold)[config.select_metric])


def _argbest(scores: list[float], *, higher: bool) -> int:
    """Index of the best finite score (first on ties, so grid order breaks them); 0 when none is finite."""
    values = np.array(scores, dtype=np.float64)
    if not np.isfinite(values).any():
        log.warning("the select metric is undefined (NaN) for every config; keeping the first config of the grid")
        return 0
    values = np.where(np.isfinite(values), values if higher else -values, -np.inf)
    return int(np.argmax(values))


def _class_weight(config: HeadsConfig) -> str | None:
    return None if config.class_weight == "none" else config.class_weight


def _full_proba(estimator, X: np.ndarray, n_classes: int) -> np.ndarray:
    return _expand(estimator.predict_proba(X), estimator.classes_, n_classes)


def _expand(proba: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities over the estimator's classes -> over all cache classes (absent ones get 0)."""
    classes = np.asarray(classes)
    if proba.shape[1] == n_classes and np.array_equal(classes, np.arange(n_classes)):
        return proba
    out = np.zeros((proba.shape[0], n_classes), dtype=proba.dtype)
    out[:, classes.astype(np.int64)] = proba[:, : len(classes)]
    return out


def _predictions(rows: _Rows, proba: np.ndarray) -> dict:
    return {"ids": rows.ids.tolist(), "y_true": rows.y.tolist(), "proba": np.asarray(proba, dtype=np.float64).tolist()}
