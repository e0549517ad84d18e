"""`headstart demo`: the whole pipeline on generated chest-X-ray phantoms, on a CPU in minutes.

It calls the library functions the commands call, in the order a user would: extract resnet18 and densenet121
once, sweep heads on the cache, fine-tune resnet18 on the same splits (read from the cache), then compare.
Images are small (64 px) so the fine-tune fits the time budget; the cache is extracted at the same size, so the
two strategies see the same pixels.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from headstart.cache.schema import staging_dir
from headstart.data.synthetic import make_phantom_dataset
from headstart.data.types import SplitConfig
from headstart.errors import DataError, WeightsError, one_line
from headstart.evaluation.timing import Timer

logger = logging.getLogger(__name__)

MARKER = ".headstart-demo"  # marks a folder the demo made, so a rerun may replace its contents
OWNED = ("data", "features.h5", "runs", "report")  # what the demo writes under its folder (and may replace)


@dataclass
class DemoConfig:
    """Sizes chosen to finish in under 5 minutes on a 2-core CPU (see the README for the measured time)."""

    n_train: int = 320  # phantoms in train/ (1 : 2.9 NORMAL : PNEUMONIA, as in Kaggle)
    n_test: int = 120  # phantoms in test/
    n_val: int = 16  # the Kaggle-sized val/ that is too small, so the grouped carve-out path runs
    phantom_size: int = 96  # pixels of the generated JPEGs; decoding and resizing still run
    image_size: int = 64  # backbone input for extraction and fine-tune alike ("reduced size")
    backbones: tuple[str, ...] = ("resnet18", "densenet121")  # extracted once into one cache
    heads: tuple[str, ...] = ("logreg", "linear", "mlp", "knn")  # the default sweep's four heads
    sweep: str = "default"  # the README's grid
    head_seeds: int = 2  # seeds per head, so the report shows mean ± std
    finetune_backbone: str = "resnet18"  # the contrast: one full fine-tune
    epochs: int = 4  # fine-tune epochs; enough for the curves to show a trend
    batch_size: int = 32  # fine-tune batch size
    weights: str = "imagenet"  # falls back to random, with a warning, when ImageNet weights are not cached
    n_boot: int = 1000  # bootstrap resamples behind every interval
    seed: int = 0  # data generation, splits and training

    @classmethod
    def quick(cls, **overrides) -> DemoConfig:
        """A smaller run for tests and a first look: fewer images, the quick sweep, two epochs."""
        small = dict(n_train=96, n_test=48, phantom_size=48, image_size=32, sweep="quick", head_seeds=1,
                     heads=("logreg", "linear"), epochs=2, batch_size=16, n_boot=200)
        return cls(**{**small, **overrides})


@dataclass
class DemoResult:
    """Where everything went, which weights were used, and how long each step took."""

    output: Path
    report_html: Path
    weights: str  # the weights actually used ("random" after a fallback)
    weights_note: str | None = None  # why the fallback happened, else None
    seconds: dict[str, float] = field(default_factory=dict)  # step name -> wall seconds


def run_demo(*, output: str | Path, config: DemoConfig) -> DemoResult:
    """Generate the phantoms under `output/data` and run extract, heads, finetune and compare on them."""
    from headstart.evaluation.report import build_report
    from headstart.extract.config import ExtractConfig
    from headstart.extract.runner import run_extract
    from headstart.finetune.config import FinetuneConfig
    from headstart.finetune.train import run_finetune
    from headstart.heads.runner import HeadsConfig, run_heads

    output = _prepare_folder(Path(output))
    data, cache, runs = output / "data", output / "features.h5", output / "runs"
    seconds: dict[str, float] = {}
    split = SplitConfig(seed=config.seed)

    with Timer() as timer:
        make_phantom_dataset(data, n_train=config.n_train, n_test=config.n_test, val=config.n_val,
                             image_size=config.phantom_size, seed=config.seed)
    seconds["data"] = timer.seconds
    logger.info("demo: %d phantom images in %s (%.1f s)", config.n_train + config.n_test + config.n_val, data,
                timer.seconds)

    extract = ExtractConfig(backbones=list(config.backbones), weights=config.weights, image_size=config.image_size,
                            seed=config.seed, split=split, overwrite=True)
    weights, note = config.weights, None
    with Timer() as timer:
        try:
            run_extract(data=str(data), output=str(cache), config=extract)
        except WeightsError as error:
            if config.weights != "imagenet":
                raise
            weights, note = "random", one_line(error)
            logger.warning(
                "WARNING: ImageNet weights are not available (%s). The demo continues with RANDOM weights: the "
                "pipeline and timings are real, but the accuracy numbers say nothing about pretrained features.",
                note,
            )
            run_extract(data=str(data), output=str(cache), config=replace(extract, weights=weights))
    seconds["extract"] = timer.seconds

    with Timer() as timer:
        run_heads(cache_path=cache, runs_dir=runs,
                  config=HeadsConfig(heads=list(config.heads), sweep=config.sweep, seeds=config.head_seeds,
                                     n_boot=config.n_boot))
    seconds["heads"] = timer.seconds

    finetune = FinetuneConfig(backbone=config.finetune_backbone, weights=weights, epochs=config.epochs,
                              image_size=config.image_size, batch_size=config.batch_size, n_boot=config.n_boot,
                              seed=config.seed)
    with Timer() as timer:
        run_finetune(data=str(data), runs_dir=str(runs), config=finetune, split_config=split, splits_from=str(cache))
    seconds["finetune"] = timer.seconds

    with Timer() as timer:
        report = build_report(runs_dir=runs, output_dir=output / "report")
    seconds["compare"] = timer.seconds
    return DemoResult(output=output, report_html=report.report_html, weights=weights, weights_note=note,
                      seconds=seconds)


def _prepare_folder(output: Path) -> Path:
    """Create `output`, or clear what an earlier demo wrote there; refuse a non-empty folder the demo did not make."""
    if output.exists() and not output.is_dir():
        raise DataError(f"demo output {output} is a file; expected a folder; pass another -o DIR")
    if output.is_dir() and any(output.iterdir()) and not (output / MARKER).exists():
        raise DataError(f"demo output {output} is a non-empty folder the demo did not create; "
                        "expected a new or earlier demo folder; pass another -o DIR")
    output.mkdir(parents=True, exist_ok=True)
    (output / MARKER).touch()
    owned = [output / name for name in OWNED] + [staging_dir(output / "features.h5")]
    for path in owned:  # a rerun starts clean, so records of an earlier configuration never mix in
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    return output
