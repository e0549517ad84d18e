"""Extraction configuration: one dataclass, so the library never sees a click or argparse namespace."""

from __future__ import annotations

from dataclasses import dataclass, field

from headstart.backbones.names import CROPS, check_layer, check_pool
from headstart.cache.schema import FEATURE_DTYPES
from headstart.data.options import SourceOptions
from headstart.data.types import SplitConfig
from headstart.errors import ConfigError
from headstart.extract.views import ViewPlan
from headstart.precision import ENGINES, PRECISIONS

BAD_IMAGE_POLICIES = ("fail", "skip")
DECODE_MODES = ("cpu", "device")


@dataclass
class ExtractConfig:
    backbones: list[str] = field(default_factory=lambda: ["resnet18"])  # NAME, timm:NAME, xrv:NAME, hf:ORG/NAME
    # Each (backbone, layer, pool) is one feature set, all from one forward pass per backbone. Empty: the default
    # layer ("final") and pool ("default"), whose set is named after the backbone alone.
    pools: list[str] = field(default_factory=list)  # default | cls | mean | gem | cls+mean
    layers: list[str] = field(default_factory=list)  # module paths such as layer3 or blocks.8; "final" = the last
    engine: str = "auto"  # auto: onnxruntime on the CPU when installed (fp32), torch on CUDA; see headstart.engines
    trust_remote_code: bool = False  # hf: only; runs code from the model repository; recorded in the fingerprint
    weights: str = "imagenet"  # imagenet | random | path to a local state dict; never silently replaced
    image_size: int | None = None  # None: each backbone's own input size (224 for most)
    crop: str = "center"  # the plain view: center | full | pad (extract.preprocess.crop_geometry); fingerprinted
    batch_size: int = 64  # images per forward pass; also the unit of resume
    device: str = "auto"  # auto picks CUDA when present
    precision: str = "auto"  # auto: fp16 autocast on CUDA, fp32 on CPU (bf16 measured slower here)
    decode: str = "cpu"  # cpu: PIL in the workers; device: JPEGs decoded on the extraction device (nvJPEG on CUDA)
    # decode processes; None: on a CPU with PIL decode, one thread per core decodes each batch between forwards
    # (extract.loader.ThreadedBatches), else processes sized to the machine (device.default_workers)
    workers: int | None = None
    feature_dtype: str = "float16"  # float16 halves the file; pooled features lose nothing measurable
    on_bad_image: str = "fail"  # fail: stop naming the file; skip: count it, record it, go on
    overwrite: bool = False  # replace a feature set (or cache) made for a different request
    seed: int = 0  # seeds random-weight backbones so a resumed run rebuilds the same network
    split: SplitConfig = field(default_factory=SplitConfig)  # how missing val/test splits are carved
    source: SourceOptions = field(default_factory=SourceOptions)  # how DATA is read (CSV columns, projection...)
    views: int = 0  # K augmented views per training image, stored beside the plain features (extract.views)
    augment: str = "light"  # the preset K views are drawn with (data.augment.PRESETS)
    tta: int = 0  # M deterministic test-time views per val/test image (data.augment.TTA_CROPS)

    def view_plan(self) -> ViewPlan:
        """--views/--augment/--tta with the extraction seed: what `extract.views` stores."""
        return ViewPlan(k=self.views, m=self.tta, preset=self.augment, seed=self.seed)

    def validate(self) -> None:
        """Refuse invalid values with one line naming the option, before a backbone is built or a file is read."""
        if not self.backbones:
            raise ConfigError("no backbone given; pass -b NAME (e.g. -b resnet18), see `headstart backbones`")
        checks = [
            (len(set(self.backbones)) == len(self.backbones),
             f"backbone names repeat in {self.backbones}; give each -b once"),
            (self.batch_size >= 1, f"--batch-size {self.batch_size} is invalid; expected a positive integer"),
            (self.image_size is None or self.image_size >= 1,
             f"--image-size {self.image_size} is invalid; expected a positive number of pixels"),
            (self.crop in CROPS, f"--crop {self.crop!r} is invalid; expected one of {', '.join(CROPS)}"),
            (self.precision in PRECISIONS,
             f"--precision {self.precision!r} is invalid; expected one of {', '.join(PRECISIONS)}"),
            (self.workers is None or self.workers >= 0, f"--workers {self.workers} is invalid; expected >= 0"),
            (self.feature_dtype in FEATURE_DTYPES,
             f"--feature-dtype {self.feature_dtype!r} is invalid; expected {' or '.join(FEATURE_DTYPES)}"),
            (self.on_bad_image in BAD_IMAGE_POLICIES,
             f"--on-bad-image {self.on_bad_image!r} is invalid; expected {' or '.join(BAD_IMAGE_POLICIES)}"),
            (self.decode in DECODE_MODES, f"--decode {self.decode!r} is invalid; expected {' or '.join(DECODE_MODES)}"),
            (self.engine in ENGINES, f"--engine {self.engine!r} is invalid; expected one of {', '.join(ENGINES)}"),
            (len(set(self.pools)) == len(self.pools), f"--pool values repeat in {self.pools}; give each once"),
            (len(set(self.layers)) == len(self.layers), f"--layer values repeat in {self.layers}; give each once"),
            (self.decode == "cpu" or not (self.views or self.tta),
             "--views/--tta draw views from PIL-decoded images; use them with --decode cpu"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        self.source.validate()
        self.view_plan().validate()
        for pool in self.pools:
            check_pool(pool)
        for layer in self.layers:
            check_layer(layer)
