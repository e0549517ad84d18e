"""Options of `predict` and `export`, as dataclasses: the library never sees a click namespace."""

from __future__ import annotations

from dataclasses import dataclass

from headstart.errors import ConfigError
from headstart.precision import ENGINES, PRECISIONS

FORMATS = ("csv", "jsonl")
BAD_IMAGE_POLICIES = ("fail", "skip")
SPLITS = ("train", "val", "test")
EXPORT_SUFFIXES = (".onnx", ".pt2")
EXPORT_TOLERANCE = 1e-4  # max |exported - PyTorch| probability on the self-check batch; above it nothing is written


@dataclass
class PredictConfig:
    """How `headstart predict` runs; the CLI options map one to one onto these fields."""

    format: str = "csv"  # csv | jsonl: the same columns, one row (object) per image
    batch_size: int = 64  # images per forward pass, as in extract
    device: str = "auto"  # auto picks CUDA when present (exported ONNX models run on the CPU)
    precision: str = "auto"  # extract's rule: fp16 autocast on CUDA, fp32 on CPU
    engine: str = "auto"  # extract's --engine: auto = onnxruntime on CPU (checked on DATA's first rows), torch on CUDA
    workers: int | None = None  # decode processes; None decodes as extract does (threads between forwards on a CPU)
    on_bad_image: str = "fail"  # fail: stop naming the file; skip: a row with empty probabilities and a reason
    weights: str | None = None  # a local weights file, for heads trained on `--weights PATH` features (sha256 checked)
    cache: str | None = None  # apply a cached head to features already in this cache, instead of DATA images
    split: str | None = None  # with `cache`: only this split's rows; None: every row
    n_boot: int = 1000  # bootstrap resamples behind each 95% interval, when DATA has labels

    def validate(self) -> None:
        checks = [
            (self.format in FORMATS, f"--format {self.format!r} is invalid; expected {' or '.join(FORMATS)}"),
            (self.batch_size >= 1, f"--batch-size {self.batch_size} is invalid; expected a positive integer"),
            (self.precision in PRECISIONS,
             f"--precision {self.precision!r} is invalid; expected one of {', '.join(PRECISIONS)}"),
            (self.engine in ENGINES, f"--engine {self.engine!r} is invalid; expected one of {', '.join(ENGINES)}"),
            (self.workers is None or self.workers >= 0, f"--workers {self.workers} is invalid; expected >= 0"),
            (self.on_bad_image in BAD_IMAGE_POLICIES,
             f"--on-bad-image {self.on_bad_image!r} is invalid; expected {' or '.join(BAD_IMAGE_POLICIES)}"),
            (self.split is None or self.split in SPLITS,
             f"--split {self.split!r} is invalid; expected one of {', '.join(SPLITS)}"),
            (self.split is None or self.cache is not None, "--split selects rows of --cache; pass --cache CACHE too"),
            (self.n_boot >= 1, f"n_boot {self.n_boot} is invalid; expected at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


@dataclass
class ExportConfig:
    """How `headstart export` runs."""

    weights: str | None = None  # as PredictConfig.weights
    tolerance: float = EXPORT_TOLERANCE  # refuse an export that differs from PyTorch by more than this
    check_batch: int = 3  # rows of the random self-check batch (more than the tracing example, so a fixed batch shows)

    def validate(self) -> None:
        if not self.tolerance > 0:
            raise ConfigError(f"tolerance {self.tolerance} is invalid; expected a positive number such as 1e-4")
        if self.check_batch < 1:
            raise ConfigError(f"check_batch {self.check_batch} is invalid; expected at least 1")
