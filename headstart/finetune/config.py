"""Fine-tune configuration: dataclasses only, so the library never sees a click or argparse namespace."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from headstart.backbones.names import CROPS
from headstart.data.augment import PRESETS
from headstart.data.balance import CLASS_WEIGHTS
from headstart.data.options import SourceOptions
from headstart.errors import ConfigError
from headstart.evaluation import SELECT_METRICS as EVALUATION_SELECT_METRICS
from headstart.precision import PRECISIONS

FREEZE_MODES = ("none", "partial", "backbone")
# What may pick the best epoch: every metric that selects a head's config, scored on the epoch's val predictions
# the same way (evaluation.selection), plus the class-weighted val loss that only a trained-in-epochs run has.
SELECT_METRICS = (*EVALUATION_SELECT_METRICS, "loss")

# Keys that may change between a run and its `--resume` without changing what is computed: where it runs and
# how patiently it waits. Every other key is part of the checkpoint fingerprint.
RESUME_FREE_KEYS = ("device", "workers", "patience")


@dataclass
class AugmentConfig:
    """Label-preserving augmentation for radiographs, one of `headstart.data.augment`'s named presets; applied
    to the train split only.

    The default `mild` (crop scale 0.85-1, rotation +-7 degrees) has no flip: chest X-rays have a fixed
    anatomical orientation (heart on the patient's left, the "L" marker, situs), so a mirrored image is not a
    plausible sample and teaches the model to ignore laterality. `light-flip` is the explicit choice of a flip.
    """

    enabled: bool = True  # False (`--no-augment`): train images get exactly the eval preprocessing
    preset: str = "mild"  # a name in headstart.data.augment.PRESETS (`--augment-preset`)

    @classmethod
    def none(cls) -> "AugmentConfig":
        return cls(enabled=False)


@dataclass
class FinetuneConfig:
    """Everything that determines a fine-tune run (plus where it runs: device, workers)."""

    backbone: str = "resnet18"  # registry name, see `headstart backbones`
    weights: str = "imagenet"  # imagenet | random | path to a local state dict; never silently replaced
    epochs: int = 10  # upper bound; early stopping usually ends sooner
    lr: float = 1e-3  # peak learning rate of the head (after warmup)
    backbone_lr_mult: float = 0.1  # pretrained layers move 10x slower than the new head, so features survive
    weight_decay: float = 1e-4  # AdamW decoupled decay; not applied to biases and norm weights
    batch_size: int = 32  # fits a 224 px densenet121 fine-tune in ~8 GB with AMP
    freeze: str = "none"  # none: all layers train; partial: last stage + head; backbone: head only (BN frozen)
    image_size: int | None = None  # None: the backbone's own input size (224 for most)
    crop: str = "center"  # the plain view (extract --crop): center | full | pad; match the cache's to compare
    precision: str = "auto"  # auto: bf16 (or fp16 without bf16 support) autocast on CUDA, fp32 on CPU
    device: str = "auto"  # auto picks CUDA when present
    workers: int | None = None  # decode processes; None: none on CPU, sized to the machine on GPU (train.loader_workers)
    warmup_epochs: float = 1.0  # linear warmup length; protects pretrained weights from the head's first big steps
    patience: int = 3  # stop after this many epochs without a better val metric; 0 disables early stopping
    select_metric: str = "auroc"  # val metric that picks the best epoch (see SELECT_METRICS; loss: lower is better)
    threshold_rule: str = "youden"  # how the decision threshold is chosen on val, then frozen for test
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # train split only, never val or test
    class_weight: str = "balanced"  # balanced: loss weights n/(k*n_c), as the cached heads use; none: plain CE
    seed: int = 0  # seeds the model head, shuffling and augmentation (splits use SplitConfig.seed)
    deterministic: bool = False  # deterministic kernels: a resumed run reproduces the uninterrupted one exactly
    n_boot: int = 1000  # bootstrap resamples for the test-set confidence intervals
    train_size: str | None = None  # train on a patient-grouped, stratified draw ("k=4", "200", "10%"; data.draws)
    uncertain: str | list[str] = "ignore"  # multi-label: ignore | zeros | ones, or POLICY:A,B specs (data.label_policy)
    blank: str = "negative"  # multi-label: an unmentioned finding is a negative, or unknown (masked)
    source: SourceOptions = field(default_factory=SourceOptions)  # how DATA is read (CSV columns, projection...)

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        """Refuse invalid values with one line naming the option, before anything expensive runs."""
        checks = [
            (self.freeze in FREEZE_MODES, f"--freeze {self.freeze!r} is invalid; expected one of {', '.join(FREEZE_MODES)}"),
            (self.precision in PRECISIONS, f"--precision {self.precision!r} is invalid; expected one of {', '.join(PRECISIONS)}"),
            (self.class_weight in CLASS_WEIGHTS, f"class_weight {self.class_weight!r} is invalid; expected one of {', '.join(CLASS_WEIGHTS)}"),
            (self.select_metric in SELECT_METRICS, f"select_metric {self.select_metric!r} is invalid; expected one of {', '.join(SELECT_METRICS)}"),
            (self.epochs >= 1, f"--epochs {self.epochs} is invalid; expected at least 1"),
            (self.batch_size >= 1, f"--batch-size {self.batch_size} is invalid; expected a positive integer"),
            (self.lr > 0, f"--lr {self.lr} is invalid; expected a positive learning rate such as 1e-3"),
            (self.backbone_lr_mult >= 0, f"backbone_lr_mult {self.backbone_lr_mult} is invalid; expected >= 0"),
            (self.weight_decay >= 0, f"weight_decay {self.weight_decay} is invalid; expected >= 0"),
            (self.warmup_epochs >= 0, f"warmup_epochs {self.warmup_epochs} is invalid; expected >= 0"),
            (self.patience >= 0, f"--patience {self.patience} is invalid; expected >= 0 (0 disables early stopping)"),
            (self.image_size is None or self.image_size >= 1, f"--image-size {self.image_size} is invalid; expected a positive number of pixels"),
            (self.workers is None or self.workers >= 0, f"--workers {self.workers} is invalid; expected >= 0"),
            (self.n_boot >= 1, f"n_boot {self.n_boot} is invalid; expected at least 1"),
            (self.augment.preset in PRESETS,
             f"--augment-preset {self.augment.preset!r} is invalid; expected one of {', '.join(PRESETS)}"),
            (self.crop in CROPS, f"--crop {self.crop!r} is invalid; expected one of {', '.join(CROPS)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        self.source.validate()
        from headstart.data.label_policy import BLANK_RULES  # here: numpy stays out of the CLI's --help

        if self.blank not in BLANK_RULES:
            raise ConfigError(f"--blank {self.blank!r} is invalid; expected one of {', '.join(BLANK_RULES)}")
        if self.train_size is not None:
            from headstart.data.draws import parse_size  # here: the CLI imports this config for --help

            parse_size(self.train_size)  # a ConfigError naming the accepted forms
