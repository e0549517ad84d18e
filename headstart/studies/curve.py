"""Label efficiency on a cache: how a head's test metric grows with the number of labelled training images.

For each feature set x head, and each size of a ladder (k images per class for k = 1, 2, 4, ..., then 1% .. 100%
of train; or `sizes`), `repeats` seeded draws of whole patients, stratified by class (`data.draws`, the draw
`finetune --train-size` makes too). Each draw runs the head's sweep on the subsample (`heads.fitting`), selects
on the full val split (or, with `val_from_train`, by cross-validation inside the subsample), chooses the
threshold on val and scores test once (`evaluation.selection` and `evaluation.finish`, as `heads` does).
`RUNS/curve_<set>_<head>/curve.json` holds every point, a summary per size (mean, sd and the t-interval over
repeats) and the power law fitted to the test metric (`studies.curve_fit`).

A multi-label cache gets the same curve under its label policy (`uncertain`, `blank`, as `heads` takes them):
draws are stratified by each finding's positives, each draw's config is selected on val macro AUROC (with
`val_from_train`: out-of-fold macro AUROC over the findings every fold trained, `heads.cv_strata`), and the
curve's metric is the test macro AUROC over the findings (`tasks.multilabel`). With `views="on"` every curve
has a twin trained on the cached views (`heads --views on`, `heads.views`) on the same draws, in
`RUNS/curve_<set>_<head>-views/`: a with/without-views pair at every size, where augmentation matters most.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from headstart.cache.reader import FeatureCache
from headstart.data.balance import class_weight_mode
from headstart.data.draws import Draw, SizeSpec, draw_subsample, ladder, parse_size, sort_sizes
from headstart.device import resolve_device
from headstart.errors import ConfigError, DataError, one_line
from headstart.evaluation import SELECT_METRICS
from headstart.evaluation.finish import FinalEvaluation, RunOutline, SplitPredictions, finish_run
from headstart.evaluation.records import jsonable, make_run_id
from headstart.evaluation.selection import best_index, val_score
from headstart.evaluation.thresholds import parse_threshold_rule
from headstart.evaluation.timing import Timer
from headstart.heads import SWEEP_NAMES
from headstart.heads.fitting import FitSettings, Rows, applied_model, full_proba, run_sweep
from headstart.heads.registry import get_head
from headstart.heads.registry import names as head_names
from headstart.heads.sweep import get_sweep
from headstart.heads.labels import TaskLabels, task_labels
from headstart.heads.views import attach_views, for_head
from headstart.io import write_bytes_atomic
from headstart.evaluation.curve_doc import CURVE_FORMAT, CURVE_FORMAT_VERSION, CURVE_NAME
from headstart.evaluation.curve_fit import FIT_METRICS, fit_power_law, mean_ci, standard_error
from headstart.versions import collect_versions

log = logging.getLogger(__name__)

SUMMARY_METRICS = ("auroc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1", "auprc")


@dataclass
class CurveConfig:
    """What `headstart curve` runs; the CLI options map one to one onto these fields."""

    feature_sets: list[str] | None = None  # names under /features; None = every complete set
    heads: list[str] = field(default_factory=lambda: ["logreg"])  # each head gets its own curve
    sizes: list[str] | None = None  # "k=4", "200", "10%"; None = the default ladder; the whole train is always last
    repeats: int = 5  # seeded draws per size below the whole train split (which is one draw)
    sweep: str = "quick"  # the grid each draw sweeps (heads.sweep); quick keeps 60 draws cheaper than one epoch
    seed: int = 0  # repeat r draws with seed + r: `finetune --train-size S --seed seed+r` trains on the same images
    val_from_train: bool = False  # select by cross-validation inside the subsample instead of on the full val split
    metric: str = "auroc"  # the test metric the power law is fitted to
    target: float | None = None  # also report the labels the fit needs to reach this metric value
    select_metric: str = "auroc"  # val metric that picks each draw's config
    threshold_rule: str = "youden"  # binary decision threshold, chosen on val and frozen for test
    class_weight: str = "balanced"  # as `heads`: inverse class frequency of the subsample
    device: str = "auto"  # torch heads' device
    n_boot: int = 1000  # bootstrap resamples behind each point's 95% intervals
    uncertain: str | list[str] = "ignore"  # multi-label caches: how uncertain labels train (as `heads --uncertain`)
    blank: str = "negative"  # multi-label caches: a blank is a negative or unknown (as `heads --blank`)
    views: str = "off"  # on: each curve also trained on the cached views, on the same draws (module notes)

    def validate(self) -> None:
        unknown = [h for h in self.heads if h not in head_names()]
        if unknown or not self.heads:
            raise ConfigError(f"unknown head {', '.join(unknown) or '(none given)'}; expected one or more of "
                              f"{', '.join(head_names())}")
        checks = [
            (self.repeats >= 1, f"--repeats {self.repeats} is invalid; expected at least 1"),
            (self.sweep in SWEEP_NAMES, f"unknown sweep {self.sweep!r}; expected one of {', '.join(SWEEP_NAMES)}"),
            (self.metric in FIT_METRICS, f"--metric {self.metric!r} cannot be fitted; expected one of "
                                         f"{', '.join(FIT_METRICS)}"),
            (self.select_metric in SELECT_METRICS, f"unknown select metric {self.select_metric!r}; expected one of "
                                                   f"{', '.join(SELECT_METRICS)}"),
            (self.target is None or 0 < self.target < 1, f"--target {self.target} is invalid; expected a value of "
                                                         f"the metric between 0 and 1, e.g. 0.95"),
            (self.n_boot >= 1, f"n_boot is {self.n_boot}; expected at least 1"),
            (self.views in ("off", "on"), f"--views {self.views!r} is invalid; expected off or on"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        for size in self.sizes or []:
            parse_size(size)
        class_weight_mode(self.class_weight)
        parse_threshold_rule(self.threshold_rule)


@dataclass
class CurveResult:
    """One curve: where it was written and what it holds (the curve.json document)."""

    path: Path
    feature_set: str
    head: str
    document: dict


@dataclass
class _Pools:
    """One feature set's usable rows per split and what every point of its curves shares."""

    feature_set: str
    backbone: str
    train: Rows
    val: Rows
    test: Rows
    dataset: dict
    n_classes: int  # strata of the draws: classes, or for multi-label the findings
    multilabel: bool = False


def run_curve(*, cache_path: str | Path, runs_dir: str | Path, config: CurveConfig,
              progress: bool = True) -> list[CurveResult]:
    """Write one curve.json per feature set x head under `runs_dir`; returns them in that order."""
    config.validate()
    grid = get_sweep(config.sweep)
    device = resolve_device(config.device)
    results = []
    with FeatureCache(cache_path) as cache:
        names = config.feature_sets or [n for n, meta in cache.feature_sets.items() if meta["complete"]]
        if not names:
            raise DataError(f"{cache.path} has no complete feature set; run or finish `headstart extract` first")
        labels = task_labels(cache, config)
        if labels.task.kind == "multilabel" and config.select_metric not in ("auroc", "auprc"):
            raise ConfigError(f"--select-metric {config.select_metric} is not defined for a multi-label cache; "
                              "expected auroc or auprc (macro over the findings)")
        fit = FitSettings(grid=grid, class_weight=class_weight_mode(config.class_weight), task=labels.task,
                          device=device)
        for name in names:
            pools = _pools(cache, name, labels, views=config.views == "on")
            sizes = curve_sizes(config.sizes, n_train=len(pools.train.y), n_classes=pools.n_classes)
            for head, views in [(h, v) for h in config.heads for v in ("off", "on")[:1 + (config.views == "on")]]:
                results.append(_curve(pools, head, sizes, fit=fit, config=config, runs_dir=Path(runs_dir),
                                      progress=progress, views=views))
    return results


def curve_sizes(sizes: list[str] | None, *, n_train: int, n_classes: int) -> list[SizeSpec]:
    """The ladder in nominal order, ending with the whole train split."""
    specs = [parse_size(s) for s in sizes] if sizes else ladder(n_train, n_classes)
    return sort_sizes([*specs, parse_size("100%")], n_train, n_classes)


def curve_draw(train: Rows, size: SizeSpec, *, repeat: int, seed: int, n_classes: int) -> Draw:
    """The draw of one point: repeat r uses seed + r, as `finetune --train-size SIZE --seed seed+r` does
    (multi-label: stratified by each finding's known positives)."""
    key = train.y if train.mask is None else ((np.asarray(train.y) == 1) & train.mask).astype(np.int64)
    return draw_subsample(train.ids, key, train.groups, size, seed=seed + repeat, n_classes=n_classes)


def curve_path(runs_dir: str | Path, feature_set: str, head: str, views: str = "off") -> Path:
    """RUNS/curve_<set>_<head>/curve.json (`-views` after the head for a views twin), the set name in run-id
    characters."""
    safe = re.sub(r"[^A-Za-z0-9.\-]+", "-", feature_set)
    return Path(runs_dir) / f"curve_{safe}_{head}{'-views' if views == 'on' else ''}" / CURVE_NAME


def _pools(cache: FeatureCache, name: str, labels: TaskLabels, *, views: bool = False) -> _Pools:
    """Each split's usable rows; multi-label train rows carry the training policy's targets and mask, val and
    test rows the scored ones (never an uncertain label), as `heads` reads them (heads.labels)."""
    X, valid = cache.load(name)
    multilabel = labels.task.kind == "multilabel"

    def rows(split: str) -> Rows:
        keep = (cache.splits == split) & valid
        y, mask = (labels.y, labels.mask) if split == "train" else (labels.eval_y, labels.eval_mask)
        return Rows(X[keep], y[keep], cache.ids[keep], cache.groups[keep], mask=None if mask is None else mask[keep])

    train, val, test = rows("train"), rows("val"), rows("test")
    if views:  # train's cached views ride along in Rows.views; each draw's `take` keeps its images' views
        train = attach_views(cache, name, {"train": train, "val": val, "test": test}, valid, views=True,
                             tta=False)["train"]
    two = labels.task.trainable(train.y, train.mask).any() if multilabel else len(np.unique(train.y)) >= 2
    if not two or not len(test.y):
        what = "a finding with both classes among the train rows" if multilabel else "train rows of two classes"
        raise DataError(f"feature set '{name}' in {cache.path} needs {what} and test rows for a curve; found "
                        f"{len(train.y)} train and {len(test.y)} test rows; re-extract with those splits")
    meta = cache.feature_sets[name]
    dataset = {"manifest_hash": cache.root_attrs.get("manifest_hash"), "classes": list(cache.classes),
               "task": labels.task.kind, "cache": str(cache.path)}
    if multilabel:
        dataset.update(labels=list(labels.task.names), label_policy=labels.policy)
    return _Pools(name, str(meta.get("backbone") or name), train, val, test, dataset, len(cache.classes), multilabel)


def _curve(pools: _Pools, head: str, sizes: list[SizeSpec], *, fit: FitSettings, config: CurveConfig,
           runs_dir: Path, progress: bool, views: str = "off") -> CurveResult:
    notes: list[str] = []
    if not config.val_from_train and len(pools.val.y) == 0:
        raise DataError(f"feature set '{pools.feature_set}' has no val rows to select on; pass --val-from-train")
    draws = [(size, r) for size in sizes for r in range(1 if size.full else config.repeats)]
    points = []
    with Timer() as timer, tqdm(total=len(draws), desc=f"curve {pools.feature_set}/{head}", unit="draw",
                                disable=None if progress else True) as bar:
        for size, repeat in draws:
            draw = curve_draw(pools.train, size, repeat=repeat, seed=config.seed, n_classes=pools.n_classes)
            if draw.missing and not pools.multilabel:  # multi-label: heads leave such a finding out, with a warning
                notes.append(f"{size.label} repeat {repeat}: skipped, the draw of {draw.n} images holds no image of "
                             f"class(es) {', '.join(pools.dataset['classes'][i] for i in draw.missing)}")
            else:
                try:
                    points.append(_point(pools, head, draw, repeat=repeat, fit=fit, config=config, views=views))
                except DataError as error:  # e.g. too few images per class for cross-validation
                    notes.append(f"{size.label} repeat {repeat}: skipped, {one_line(error)}")
            bar.update(1)
    for note in notes:
        log.warning("%s/%s: %s", pools.feature_set, head, note)
    notes += _val_notes(points, n_val=len(pools.val.y), val_from_train=config.val_from_train)
    summary = summarise(points, [s.label for s in sizes])
    tested = [{**s["test"][config.metric], "repeats": s["repeats"]} for s in summary]
    fitted, reason = fit_power_law([s["n_train"] for s in summary], [t["mean"] for t in tested],
                                   sigma=[standard_error(t) for t in tested], target=config.target)
    document = {
        "format": CURVE_FORMAT, "format_version": CURVE_FORMAT_VERSION, "feature_set": pools.feature_set,
        "backbone": pools.backbone, "head": head, "views": views, "metric": config.metric, "dataset": pools.dataset,
        "config": {**asdict(config), "feature_sets": None, "heads": [head], "views": views},
        "splits": {"train": len(pools.train.y), "val": len(pools.val.y), "test": len(pools.test.y)},
        "points": points, "summary": summary, "fit": fitted, "fit_reason": reason, "notes": notes,
        "timing": {"seconds": timer.seconds, "train_seconds": float(sum(p["train_seconds"] for p in points))},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": collect_versions(),
    }
    path = curve_path(runs_dir, pools.feature_set, head, views)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(jsonable(document), indent=1, sort_keys=True, allow_nan=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))
    log.info("wrote %s (%d points, %.1f s)", path, len(points), timer.seconds)
    return CurveResult(path, pools.feature_set, head, document)


def _point(pools: _Pools, head: str, draw: Draw, *, repeat: int, fit: FitSettings, config: CurveConfig,
           views: str = "off") -> dict:
    """Sweep on the draw (with its images' views when `views` is on), select on val (or by cross-validation
    inside it), finish as every run finishes."""
    train = pools.train.take(draw.index)
    if views == "off":
        train.views = None
    select = pools.val.take(np.zeros(0, dtype=np.int64)) if config.val_from_train else pools.val
    splits = for_head(head, {"train": train, "val": select})  # views: the view mean, extra rows or per epoch
    train = splits["train"]
    sweep = run_sweep(head, splits, fit=fit, seed=draw.seed)
    scores = [val_score(sweep.select_rows.y, c.val_proba, metric=config.select_metric,
                        threshold_rule=config.threshold_rule, task=fit.task, mask=sweep.select_rows.mask)
              for c in sweep.candidates]
    # after cross-validation inside the draw: the chosen config fitted on the draw minus a held-out fifth, whose
    # threshold is chosen on that fifth (heads.fitting.applied_model)
    applied = applied_model(head, sweep, sweep.candidates[best_index(scores, metric=config.select_metric)], train,
                            fit=fit, seed=draw.seed)
    cand, rows, seconds = applied.candidate, applied.rows, sweep.seconds + applied.seconds
    test = pools.test

    def predict() -> dict[str, SplitPredictions]:
        return {"val": SplitPredictions(rows.ids, rows.y, cand.val_proba, rows.groups, rows.mask),
                "test": SplitPredictions(test.ids, test.y, full_proba(cand.estimator, test.X, fit.n_classes),
                                         test.groups, test.mask)}

    outline = RunOutline(run_id=make_run_id("cached-head", pools.feature_set, head, draw.seed,
                                            variant=f"train-{draw.size.slug}{'-views' if views == 'on' else ''}"),
                         strategy="cached-head", backbone=pools.backbone, head=head, seed=draw.seed,
                         config=dict(cand.params), dataset=pools.dataset, timing={"train_seconds": seconds})
    final = FinalEvaluation(threshold_rule=config.threshold_rule, n_boot=config.n_boot,
                            device=fit.device if get_head(head).on_device else "cpu", write=False, task=fit.task)
    record = finish_run(predict, outline=outline, final=final, runs_dir=".")
    return {**draw.describe(), "repeat": repeat, "selected": dict(cand.params), "selection": sweep.selection,
            **({"selection_findings": sweep.findings} if sweep.findings is not None else {}),
            "threshold": record.threshold, "train_seconds": seconds,
            "metrics": {split: record.metrics[split] for split in ("val", "test")}}


def summarise(points: list[dict], order: list[str]) -> list[dict]:
    """Per size: repeats, mean realised n_train and patients, and per metric the mean, sd and 95% interval.

    The interval is the t-interval of the mean over repeats; a size with one draw (the whole train split) shows
    that draw's bootstrap interval instead (`ci_kind` says which).
    """
    out = []
    for label in order:
        pts = [p for p in points if p["size"] == label]
        if not pts:
            continue
        entry = {"size": label, "repeats": len(pts), "n_train": float(np.mean([p["n_train"] for p in pts])),
                 "n_train_range": [min(p["n_train"] for p in pts), max(p["n_train"] for p in pts)],
                 "n_patients": float(np.mean([p["n_patients"] for p in pts])),
                 "ci_kind": "t-interval over repeats" if len(pts) > 1 else "bootstrap interval of the one draw"}
        for split in ("val", "test"):
            entry[split] = {}
            for metric in SUMMARY_METRICS:
                mean, sd, ci = mean_ci([p["metrics"][split].get(metric) for p in pts])
                if len(pts) == 1:
                    ci = pts[0]["metrics"][split].get(f"{metric}_ci")
                entry[split][metric] = {"mean": mean, "sd": sd, "ci": ci}
        out.append(entry)
    return out


def _val_notes(points: list[dict], *, n_val: int, val_from_train: bool) -> list[str]:
    """The label-scarce caveat: selection and thresholds that rest on more val labels than the draw trains on."""
    if val_from_train:
        return []
    larger = list(dict.fromkeys(p["size"] for p in points if p["n_train"] < n_val))
    if not larger:
        return []
    note = (f"val ({n_val} images) is larger than the training draw at {', '.join(larger)}: the config and threshold "
            f"of those points were chosen on more labels than they trained on, which a study with that few labels "
            f"would not have; --val-from-train selects by cross-validation inside each draw instead")
    log.warning("%s", note)
    return [note]
