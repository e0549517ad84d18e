"""Every command as a keyword-argument function: what the CLI calls, and what notebooks call.

Each `run_*` takes its options as keywords (defaults equal to its config dataclass's) or one whole config
dataclass as `config=`, never both; it builds the config and calls the stage's own entry point. Modules are
imported inside the functions, so `import headstart` stays free of torch until a command runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from headstart.cache.reader import verify_cache
from headstart.cache.view import open_cache
from headstart.errors import ConfigError
from headstart.evaluation.runs import Runs, load_runs
from headstart.heads import HEADS

if TYPE_CHECKING:
    from headstart.data.types import SplitConfig
    from headstart.demo import DemoResult
    from headstart.evaluation.records import RunRecord
    from headstart.evaluation.report.build import ReportResult
    from headstart.extract.config import ExtractConfig
    from headstart.extract.runner import ExtractResult
    from headstart.finetune.config import FinetuneConfig
    from headstart.heads.runner import HeadsConfig
    from headstart.apply.config import ExportConfig, PredictConfig
    from headstart.apply.export import ExportResult
    from headstart.apply.predict import PredictResult
    from headstart.studies.audit import AuditReport
    from headstart.studies.curve import CurveConfig, CurveResult
    from headstart.studies.screen import ScreenConfig, ScreenResult

__all__ = ["load_runs", "open_cache", "run_compare", "run_demo", "run_extract", "run_finetune", "run_heads",
           "run_audit", "run_curve", "run_screen", "run_predict", "run_export", "verify_cache"]

SPLIT_OPTIONS = ("val_fraction", "test_fraction", "group_pattern")  # SplitConfig fields besides the seed


def run_extract(data: str | Path, output: str | Path, *, backbones: Sequence[str] = ("resnet18",),
                pools: Sequence[str] = (), layers: Sequence[str] = (), engine: str = "auto",
                trust_remote_code: bool = False,
                weights: str = "imagenet", image_size: int | None = None, crop: str = "center",
                batch_size: int = 64, device: str = "auto", precision: str = "auto", decode: str = "cpu",
                workers: int | None = None,
                feature_dtype: str = "float16", val_fraction: float = 0.1, test_fraction: float = 0.2,
                group_pattern: str | None = None, seed: int = 0, on_bad_image: str = "fail",
                overwrite: bool = False, labels: Sequence[str] = (), label_column: str | None = None,
                label_sep: str | None = None, path_column: str | None = None, group_column: str | None = None,
                split_column: str | None = None, projection: str = "all", allow_missing: bool = False,
                views: int = 0, augment: str = "light", tta: int = 0,
                config: ExtractConfig | None = None) -> ExtractResult:
    """`headstart extract`: run frozen backbones once over DATA and cache their features in OUTPUT (HDF5).

    DATA is a Kaggle-layout folder, a folder of class folders, a CSV manifest or a MedMNIST .npz. An interrupted
    run resumes when called again with the same arguments; a cache made for another request is refused unless
    `overwrite`. The split options (val/test fractions, group pattern, seed) carve missing splits. Each
    (backbone, layer, pool) of `backbones` x `layers` x `pools` becomes one feature set, all from one forward
    pass per backbone; `engine` is auto (onnxruntime on the CPU, torch on CUDA), torch or onnxruntime. `crop`
    is the plain view (center, full or pad; see `extract.preprocess.crop_geometry`). `views` K augmented views
    per training image (drawn with preset `augment`) and `tta` M test-time views per val/test image are cached
    beside the plain features (`extract.views`).
    The reader options (`labels`, `label_column`, `label_sep`, the other `*_column`s, `projection`,
    `allow_missing`) read multi-label CSVs and the NIH / CheXpert layouts (`headstart.data.options`).
    """
    from headstart.extract.runner import run_extract as extract

    options = _options(run_extract, locals(), skip=("data", "output", "config"))
    if config is not None:
        _refuse_mixed(run_extract, "config", options, list(options))
    else:
        config = _extract_config(options)
    return extract(data=str(data), output=str(output), config=config)


def run_heads(cache: str | Path, output: str | Path, *, feature_sets: Sequence[str] | None = None,
              heads: Sequence[str] = HEADS, sweep: str = "default", seeds: int = 1, select_metric: str = "auroc",
              threshold_rule: str = "youden", class_weight: str = "balanced", device: str = "auto",
              precision: str = "auto", n_boot: int = 1000, views: str = "off", tta: str = "off",
              uncertain: str | Sequence[str] = "ignore", blank: str = "negative",
              config: HeadsConfig | None = None, progress: bool = True) -> Runs:
    """`headstart heads`: sweep heads on the cached features in CACHE; one run record per set x head x seed.

    Each configuration is fitted on train and scored on val; the best by `select_metric` is kept, its threshold
    is chosen on val by `threshold_rule` and frozen, and test is evaluated once. Records go to
    OUTPUT/<run_id>/record.json and come back as `Runs` (a list of RunRecord with `.to_frame()`).
    """
    from headstart.heads.runner import HeadsConfig, run_heads as sweep_heads

    options = _options(run_heads, locals(), skip=("cache", "output", "config", "progress"))
    if config is not None:
        _refuse_mixed(run_heads, "config", options, list(options))
    else:
        feature_sets = options.pop("feature_sets")
        config = HeadsConfig(**{**options, "heads": list(options["heads"])},
                             feature_sets=list(feature_sets) if feature_sets else None)
    return Runs(sweep_heads(cache_path=cache, runs_dir=output, config=config, progress=progress))


def run_finetune(data: str | Path, output: str | Path, *, backbone: str = "resnet18", weights: str = "imagenet",
                 epochs: int = 10, lr: float = 1e-3, batch_size: int = 32, freeze: str = "none",
                 image_size: int | None = None, crop: str = "center", precision: str = "auto", device: str = "auto",
                 workers: int | None = None, augment: bool = True, augment_preset: str = "mild", patience: int = 3,
                 deterministic: bool = False,
                 n_boot: int = 1000, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2,
                 group_pattern: str | None = None, train_size: str | None = None,
                 uncertain: str | Sequence[str] = "ignore", blank: str = "negative", labels: Sequence[str] = (),
                 label_column: str | None = None, label_sep: str | None = None, path_column: str | None = None,
                 group_column: str | None = None, split_column: str | None = None, projection: str = "all",
                 allow_missing: bool = False, splits_from: str | Path | None = None, resume: bool = False,
                 config: FinetuneConfig | None = None, split_config: SplitConfig | None = None) -> RunRecord:
    """`headstart finetune`: fine-tune BACKBONE on DATA; the best val epoch is tested once and recorded.

    With the same split options as the extraction, or `splits_from=CACHE`, the images land in the same splits
    as the cache, so `run_compare` compares like with like. `train_size` ("k=4", "200", "10%") trains on the
    patient-grouped, stratified draw `run_curve` makes at that size for repeat `seed`. `resume` continues from
    OUTPUT/<run_id>/checkpoints/last.pt. On multi-label DATA, `uncertain` and `blank` are the label policy
    (`headstart.data.label_policy`), and the reader options (`labels`, `label_column`, ...) read it as
    `run_extract` does. `config` (a FinetuneConfig) and `split_config` (a SplitConfig) replace the keyword
    options they cover.
    """
    from headstart.data.options import SOURCE_OPTIONS, SourceOptions
    from headstart.data.types import SplitConfig
    from headstart.finetune.config import AugmentConfig, FinetuneConfig
    from headstart.finetune.train import run_finetune as finetune

    options = _options(run_finetune, locals(), skip=("data", "output", "splits_from", "resume", "config",
                                                     "split_config"))
    training = [k for k in options if k not in SPLIT_OPTIONS]  # FinetuneConfig's fields, seed and reader included
    if config is not None:
        _refuse_mixed(run_finetune, "config", options, training)
    else:
        augment = AugmentConfig(enabled=options["augment"], preset=options["augment_preset"])
        source = SourceOptions(**{**{k: options[k] for k in SOURCE_OPTIONS}, "labels": list(options["labels"])})
        uncertain = options["uncertain"] if isinstance(options["uncertain"], str) else list(options["uncertain"])
        config = FinetuneConfig(**{k: options[k] for k in training if not k.startswith("augment")
                                   and k not in SOURCE_OPTIONS and k != "uncertain"},
                                augment=augment, source=source, uncertain=uncertain)
    if split_config is not None:
        _refuse_mixed(run_finetune, "split_config", options, SPLIT_OPTIONS)  # `seed` then seeds training only
    else:  # one seed for splits and training, as at the command line
        split_config = SplitConfig(**{k: options[k] for k in SPLIT_OPTIONS}, seed=config.seed)
    return finetune(data=str(data), runs_dir=str(output), config=config, split_config=split_config,
                    splits_from=None if splits_from is None else str(splits_from), resume=resume)


def run_compare(runs: str | Path, output: str | Path | None = None, *, select_metric: str = "auroc") -> ReportResult:
    """`headstart compare`: a verdict, tables, break-even, paired tests, learning curves and plots for every run
    record and curve.json under RUNS (either may be absent, not both).

    Writes report.md, report.html, summary.json and plots/ to OUTPUT (default RUNS/report).
    """
    from headstart.evaluation.report.build import build_report

    return build_report(runs_dir=runs, output_dir=output, select_metric=select_metric)


def run_demo(output: str | Path = "demo-out", *, weights: str = "imagenet", quick: bool = False) -> DemoResult:
    """`headstart demo`: extract, heads, fine-tune and compare on generated chest X-ray phantoms in OUTPUT.

    `quick` runs fewer, smaller images with the quick sweep; imagenet weights fall back to random, with a
    warning, when they are not in the torch hub cache.
    """
    from headstart.demo import DemoConfig, run_demo as demo

    config = DemoConfig.quick(weights=weights) if quick else DemoConfig(weights=weights)
    return demo(output=output, config=config)


def run_audit(cache: str | Path, *, feature_set: str | None = None, seed: int = 0, shuffle_repeats: int = 5,
              fix: bool = False, yes: bool = False, on_result: Callable | None = None) -> AuditReport:
    """`headstart audit`: shortcut and leakage checks on CACHE; `on_result(check)` sees each check as it ends.

    `fix` then publishes splits in which each near-duplicate group lives in one split (`report.fix`), changing the
    test split only with `yes`."""
    from headstart.studies.audit import AuditConfig, run_audit as audit

    config = AuditConfig(feature_set=feature_set, seed=seed, shuffle_repeats=shuffle_repeats, fix=fix,
                         confirm_test=yes)
    return audit(str(cache), config=config, on_result=on_result)


def run_curve(cache: str | Path, output: str | Path, *, feature_sets: Sequence[str] | None = None,
              heads: Sequence[str] = ("logreg",), sizes: Sequence[str] | None = None, repeats: int = 5,
              sweep: str = "quick", seed: int = 0, val_from_train: bool = False, metric: str = "auroc",
              target: float | None = None, select_metric: str = "auroc", threshold_rule: str = "youden",
              class_weight: str = "balanced", device: str = "auto", n_boot: int = 1000, views: str = "off",
              uncertain: str | Sequence[str] = "ignore", blank: str = "negative",
              config: CurveConfig | None = None, progress: bool = True) -> list[CurveResult]:
    """`headstart curve`: the test metric against labelled training images, per feature set x head in CACHE.

    Each size ("k=4" per class, "200" images, "10%" of train; default k = 1, 2, 4, ... then 1% .. 100%) is drawn
    `repeats` times, whole patients and stratified (repeat r with seed + r, as `run_finetune(train_size=...)`
    draws). Each draw sweeps the head, selects on val, thresholds on val and scores test once. Writes
    OUTPUT/curve_<set>_<head>/curve.json (points, a summary per size, the power-law fit) and returns them.
    A multi-label cache is drawn per finding and ranked by macro AUROC, under `uncertain` / `blank` as in
    `run_heads`.
    `views="on"` adds each curve's twin on the cached views (`extract --views K`), same draws, in
    OUTPUT/curve_<set>_<head>-views/.
    """
    from headstart.studies.curve import CurveConfig, run_curve as curve

    options = _options(run_curve, locals(), skip=("cache", "output", "config", "progress"))
    if config is not None:
        _refuse_mixed(run_curve, "config", options, list(options))
    else:
        listed = {k: (None if options[k] is None else list(options[k])) for k in ("feature_sets", "sizes")}
        config = CurveConfig(**{**options, **listed, "heads": list(options["heads"]),
                                "uncertain": options["uncertain"] if isinstance(options["uncertain"], str)
                                else list(options["uncertain"])})
    return curve(cache_path=cache, runs_dir=output, config=config, progress=progress)


def run_screen(data: str | Path, output: str | Path, *, backbones: Sequence[str] = ("resnet18",),
               engine: str = "auto", trust_remote_code: bool = False, weights: str = "imagenet", image_size: int | None = None, crop: str = "center", batch_size: int = 64, device: str = "auto",
               precision: str = "auto", decode: str = "cpu", workers: int | None = None,
               feature_dtype: str = "float16", val_fraction: float = 0.1, test_fraction: float = 0.2,
               group_pattern: str | None = None, seed: int = 0, on_bad_image: str = "fail", overwrite: bool = False,
               keep: int = 1, head: str = "logreg", sweep: str = "quick", fraction: float = 0.1,
               min_images: int = 200, n_boot: int = 1000, uncertain: str | Sequence[str] = "ignore",
               blank: str = "negative", labels: Sequence[str] = (), label_column: str | None = None,
               label_sep: str | None = None, path_column: str | None = None, group_column: str | None = None,
               split_column: str | None = None, projection: str = "all", allow_missing: bool = False,
               config: ScreenConfig | None = None) -> ScreenResult:
    """`headstart screen`: successive halving over `backbones`, then the survivors extracted fully into OUTPUT.

    Takes every option of `run_extract` but the views', with the same meaning (the CSV reader's included).
    Round 1 extracts every candidate on `fraction` of train+val (at least `min_images`; whole patients,
    stratified), sweeps `head` and ranks by val AUROC with bootstrap intervals; the bottom half, and any whose
    interval lies below the leader's, drop out; the subset doubles until `keep` remain. Rows staged in a round
    are reused, never forwarded twice. Writes OUTPUT.screen.json and returns the rounds and survivors.
    Multi-label data ranks by val macro AUROC under `uncertain` / `blank` as in `run_heads`.
    """
    from headstart.studies.screen import ScreenConfig, run_screen as screen

    options = _options(run_screen, locals(), skip=("data", "output", "config"))
    if config is not None:
        _refuse_mixed(run_screen, "config", options, list(options))
    else:
        race = {k: options.pop(k) for k in ("keep", "head", "sweep", "fraction", "min_images", "n_boot", "blank")}
        uncertain = options.pop("uncertain")
        race["uncertain"] = uncertain if isinstance(uncertain, str) else list(uncertain)
        config = ScreenConfig(extract=_extract_config(options), **race)
    return screen(data=str(data), output=str(output), config=config)


def _extract_config(options: dict) -> ExtractConfig:
    """`run_extract`'s keyword options -> its ExtractConfig (the split options form its SplitConfig, the reader
    options its SourceOptions)."""
    from headstart.data.options import SOURCE_OPTIONS, SourceOptions
    from headstart.data.types import SplitConfig
    from headstart.extract.config import ExtractConfig

    options = dict(options)
    split = {k: options.pop(k) for k in SPLIT_OPTIONS}
    source = {k: options.pop(k) for k in SOURCE_OPTIONS if k in options}
    source["labels"] = list(source.get("labels", ()))
    lists = {name: list(options[name]) for name in ("backbones", "pools", "layers") if name in options}
    return ExtractConfig(**{**options, **lists}, split=SplitConfig(**split, seed=options["seed"]),
                         source=SourceOptions(**source))


def run_predict(run: str | Path, data: str | Path | None, output: str | Path, *, cache: str | Path | None = None,
                split: str | None = None, format: str = "csv", batch_size: int = 64, device: str = "auto",
                precision: str = "auto", engine: str = "auto", workers: int | None = None,
                on_bad_image: str = "fail", weights: str | None = None, n_boot: int = 1000,
                config: PredictConfig | None = None, progress: bool = True) -> PredictResult:
    """`headstart predict`: apply RUN (a run folder of either strategy, or an exported .onnx/.pt2) to DATA.

    DATA is anything `run_extract` reads, or a plain folder of images; with `cache=` (and optionally `split=`)
    a cached head is applied to features already in that cache instead. `engine` runs a cached head's backbone
    as `run_extract`'s does (auto: onnxruntime on CPU, checked against torch on DATA's first rows; torch on CUDA).
    Writes OUTPUT (CSV or JSON lines: id, proba_<class>..., prediction, label when known) and, when DATA has
    labels, OUTPUT's .metrics.json.
    """
    from headstart.apply.config import PredictConfig
    from headstart.apply.predict import run_predict as predict

    options = _options(run_predict, locals(), skip=("run", "data", "output", "config", "progress"))
    if config is not None:
        _refuse_mixed(run_predict, "config", options, list(options))
    else:
        config = PredictConfig(**{**options, "cache": None if cache is None else str(cache)})
    return predict(run=run, data=data, output=output, config=config, progress=progress)


def run_export(run: str | Path, output: str | Path, *, weights: str | None = None, tolerance: float = 1e-4,
               config: ExportConfig | None = None) -> ExportResult:
    """`headstart export`: RUN as one verified graph (normalise -> backbone -> head -> probabilities) in OUTPUT
    (.onnx or .pt2) and its model card OUTPUT.json; refused when it differs from PyTorch by more than `tolerance`."""
    from headstart.apply.config import ExportConfig
    from headstart.apply.export import run_export as export

    options = _options(run_export, locals(), skip=("run", "output", "config"))
    if config is not None:
        _refuse_mixed(run_export, "config", options, list(options))
    else:
        config = ExportConfig(**options)
    return export(run=run, output=output, config=config)


# --- keywords or a config, never both -----------------------------------------------------------------------


def _options(function: Callable, given: dict, *, skip: Sequence[str]) -> dict:
    """The keyword options of `function` as it was called (its `locals()` on entry), less `skip`."""
    return {name: given[name] for name in inspect.signature(function).parameters if name not in skip}


def _refuse_mixed(function: Callable, what: str, options: dict, names: Sequence[str]) -> None:
    """`what=` (a config) was given: every option in `names` must be left at its default, or the call is ambiguous."""
    parameters = inspect.signature(function).parameters
    changed = [name for name in names if _differs(options[name], parameters[name].default)]
    if changed:
        raise ConfigError(f"both {what}= and {', '.join(changed)}= were given; pass the options either as keywords "
                          f"or inside {what}=, not both")


def _differs(value: object, default: object) -> bool:
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return list(value) != list(default)
    return value != default
