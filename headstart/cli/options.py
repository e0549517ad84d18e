"""Options shared by several commands, written once as decorators."""

from __future__ import annotations

from typing import Callable

import click

from headstart.precision import ENGINES, PRECISIONS

F = Callable[..., object]


def seed_option(f: F) -> F:
    return click.option("--seed", type=int, default=0, show_default=True, help="Seed for splits and training.")(f)


def device_option(f: F) -> F:
    return click.option(
        "--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda or cuda:i."
    )(f)


def precision_option(f: F | None = None, *, cuda_auto: str = "fp16 autocast") -> F | Callable[[F], F]:
    """`--precision`; `cuda_auto` says what auto means on CUDA for the command (inference and training differ)."""

    def decorate(g: F) -> F:
        return click.option(
            "--precision",
            type=click.Choice(PRECISIONS),
            default="auto",
            show_default=True,
            help=f"auto: {cuda_auto} on CUDA, fp32 on CPU (bf16 measured slower on CPUs without AMX).",
        )(g)

    return decorate(f) if f is not None else decorate


def feature_sets_option(f: F) -> F:
    """`-b NAME` (repeat) for commands that read a cache: heads and curve."""
    return click.option("-b", "--backbone", "feature_sets", multiple=True,
                        help="Feature set in CACHE (repeat for several; default: every complete set).")(f)


def weights_option(f: F) -> F:
    return click.option(
        "--weights",
        default="imagenet",
        show_default=True,
        help="imagenet (the provider's default pretrained weights, from its cache: torch hub, Hugging Face hub or "
             "torchxrayvision's folder), random (seeded), or a PATH to a local state dict or .safetensors file.",
    )(f)


def image_size_option(f: F) -> F:
    return click.option(
        "--image-size",
        type=click.IntRange(min=1),
        default=None,
        help="Square input size fed to the backbone (default: the backbone's own, 224 for most).",
    )(f)


def split_options(f: F) -> F:
    """Options that define splits; extract and finetune share them so both derive identical splits."""
    f = click.option("--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1,
                     show_default=True, help="Fraction of train carved out as val when val is missing or < 50 images.")(f)
    f = click.option("--test-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
                     show_default=True, help="Fraction carved out as test when there is no test split.")(f)
    f = click.option("--group-pattern", default=None,
                     help="Regex whose first group (or whole match) on the file name is the patient id.")(f)
    return seed_option(f)


def _names(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()] if value else []


def source_options(f: F) -> F:
    """How DATA is read: multi-label CSV columns, CheXpert's projection, missing images.

    The command receives labels (a list), label_column, label_sep, path_column, group_column, split_column,
    projection and allow_missing.
    """
    decorators = [
        click.option("--labels", callback=_names, default=None, metavar="A,B,C",
                     help="CSV columns holding one finding each (1 / 0 / -1 uncertain / blank): a multi-label task."),
        click.option("--label-column", default=None, metavar="COL",
                     help="The CSV's label column (default `label`); with --label-sep it holds joined findings."),
        click.option("--label-sep", default=None, metavar="SEP",
                     help="Separator of the findings in --label-column, e.g. '|' (NIH's `Finding Labels`)."),
        click.option("--path-column", default=None, metavar="COL", help="The CSV's image path column (default `path`)."),
        click.option("--group-column", default=None, metavar="COL",
                     help="The CSV's patient id column (default `group`), for grouped splits."),
        click.option("--split-column", default=None, metavar="COL",
                     help="The CSV's split column (default `split`: train / val / test / empty)."),
        click.option("--projection", type=click.Choice(["all", "frontal", "lateral"]), default="all",
                     show_default=True, help="CheXpert: keep frontal or lateral views only (its Frontal/Lateral)."),
        click.option("--allow-missing", is_flag=True,
                     help="Rows whose image is absent: one warning with the count instead of an error (for a "
                          "partial download such as some of NIH's twelve archives)."),
    ]
    for decorate in reversed(decorators):
        f = decorate(f)
    return f


def label_policy_options(f: F) -> F:
    """`--uncertain` (repeatable) and `--blank`, for the commands that train on a multi-label cache or data set
    (heads, finetune). The command receives `uncertain` (a tuple of specs, empty = ignore) and `blank`."""
    f = click.option("--blank", type=click.Choice(["negative", "unknown"]), default="negative", show_default=True,
                     help="Multi-label: a finding the report does not mention is a negative (the CheXpert paper's "
                          "reading) or unknown, masked (torchxrayvision's; 'No Finding' = 1 still clears the "
                          "others). Evaluation applies the same rule.")(f)
    return click.option("--uncertain", multiple=True, metavar="POLICY[:A,B]",
                        help="Multi-label: uncertain (-1) labels in training: ignore (masked, the default), zeros "
                             "or ones; POLICY:A,B for the named findings only (repeat; applied in order). "
                             "Evaluation never scores an uncertain label.")(f)


def crop_option(f: F) -> F:
    return click.option(
        "--crop", type=click.Choice(["center", "full", "pad"]), default="center", show_default=True,
        help="The plain view: center = resize the shorter side, centre-crop (torchvision's eval recipe; cuts the "
             "film's borders); full = resize the whole image to the square; pad = letterbox. Part of the "
             "fingerprint.")(f)


def extract_options(f: F) -> F:
    """Every option of `headstart extract` but DATA, -o and -b: `screen` takes them all, with the same meaning.

    The command receives engine, trust_remote_code, weights, image_size, crop, batch_size, device, precision, decode,
    workers, feature_dtype, val_fraction, test_fraction, group_pattern, seed, on_bad_image and overwrite.
    """
    decorators = [
        engine_option,
        trust_remote_code_option,
        weights_option,
        image_size_option,
        crop_option,
        click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True),
        device_option,
        precision_option,
        click.option("--decode", type=click.Choice(["cpu", "device"]), default="cpu", show_default=True,
                     help="cpu: PIL in the workers; device: JPEGs decoded by torchvision on the extraction device "
                          "(nvJPEG on CUDA; helps when decode limits a fast GPU). Part of the cache fingerprint."),
        click.option("--workers", type=click.IntRange(min=0), default=None,
                     help="Decode processes. Default: on a CPU (with --decode cpu) one thread per core decodes each "
                          "batch between forwards, which does not contend with the engine's threads; on a GPU, "
                          "processes sized to the machine."),
        click.option("--feature-dtype", type=click.Choice(["float16", "float32"]), default="float16",
                     show_default=True),
        split_options,
        click.option("--on-bad-image", type=click.Choice(["fail", "skip"]), default="fail", show_default=True,
                     help="fail: stop and name the file; skip: count it, record it in the cache, continue."),
        click.option("--overwrite", is_flag=True,
                     help="Replace a feature set (or cache) made for a different request."),
    ]
    for decorate in reversed(decorators):
        f = decorate(f)
    return f


def engine_option(f: F) -> F:
    """`--engine`, shared by the commands that run a frozen backbone (extract, predict, screen)."""
    return click.option(
        "--engine", type=click.Choice(ENGINES), default="auto", show_default=True,
        help="What runs the frozen backbone. auto: onnxruntime on the CPU (an exported, verified ONNX graph, kept "
             "beside the weights), torch on CUDA; torch: PyTorch eager. Recorded in the cache fingerprint.",
    )(f)


def trust_remote_code_option(f: F) -> F:
    return click.option(
        "--trust-remote-code", is_flag=True,
        help="DANGER: let an hf: model run Python code from its Hugging Face repository (off by default; models "
             "that need it are refused). Recorded in the cache fingerprint.",
    )(f)
