"""`headstart finetune`: the contrast to cached heads, on the same splits, metrics and record format."""

from __future__ import annotations

import click

from headstart.cli import Command
from headstart.cli.options import (crop_option, device_option, image_size_option, label_policy_options,
                                   precision_option, source_options, split_options, weights_option)
from headstart.data.augment import PRESETS
from headstart.finetune.config import FREEZE_MODES


@click.command(cls=Command)
@click.argument("data", type=click.Path(path_type=str))
@click.option("-o", "--output", "runs_dir", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Runs folder; the run goes to RUNS/<run_id>/ (record.json, checkpoints/).")
@click.option("-b", "--backbone", required=True, help="Backbone to fine-tune, e.g. resnet18. See `headstart backbones`.")
@weights_option
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True, help="Most epochs to train.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True,
              help="Peak head learning rate; pretrained layers use 0.1x.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Images per step on each process; under torchrun the global batch is nproc x this "
                   "(torchvision's reference convention).")
@click.option("--freeze", type=click.Choice(FREEZE_MODES), default="none", show_default=True,
              help="none: train everything; partial: last stage + head; backbone: head only, BatchNorm frozen.")
@image_size_option
@crop_option
@precision_option(cuda_auto="bf16 autocast (fp16 with a GradScaler on cards without bf16)")
@device_option
@click.option("--workers", type=click.IntRange(min=0), default=None, help="Decode processes (default: none on CPU, where decoding in the main process measured faster; sized to the cores on GPU).")
@click.option("--augment/--no-augment", default=True, show_default=True,
              help="Train-only augmentation with --augment-preset (default mild: crop scale 0.85-1, rotation "
                   "+/-7 degrees, no flips).")
@click.option("--augment-preset", type=click.Choice(list(PRESETS)), default="mild", show_default=True,
              help="mild; light (crop 0.8-1, +/-10 degrees, brightness/contrast +/-10 %); medium; light-flip (the "
                   "only one with a horizontal flip). See headstart.data.augment.")
@click.option("--splits-from", type=click.Path(path_type=str), default=None,
              help="Reuse the splits stored in this cache instead of deriving them.")
@click.option("--resume", is_flag=True, help="Continue from RUNS/<run_id>/checkpoints/last.pt at the next epoch.")
@click.option("--patience", type=click.IntRange(min=0), default=3, show_default=True,
              help="Early stopping: epochs without a better val AUROC (0: never stop early).")
@click.option("--deterministic", is_flag=True, help="Deterministic kernels (slower); a resumed run then reproduces an uninterrupted one.")
@click.option("--train-size", default=None,
              help="Train on a draw of whole patients, stratified by class: k=N per class, N images or P% of train; "
                   "the same images `headstart curve` draws at that size for repeat --seed.")
@click.option("--train-fraction", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Train on this fraction of train, drawn as --train-size P% is.")
@split_options
@source_options
@label_policy_options
def finetune(data: str, runs_dir: str, backbone: str, weights: str, epochs: int, lr: float, batch_size: int,
             freeze: str, image_size: int | None, crop: str, precision: str, device: str, workers: int | None,
             augment: bool, augment_preset: str,
             splits_from: str | None, resume: bool, patience: int, deterministic: bool, train_size: str | None,
             train_fraction: float | None, val_fraction: float, test_fraction: float, group_pattern: str | None,
             seed: int, labels: list[str], label_column: str | None, label_sep: str | None, path_column: str | None,
             group_column: str | None, split_column: str | None, projection: str, allow_missing: bool,
             uncertain: tuple[str, ...], blank: str) -> None:
    """Fine-tune BACKBONE on DATA; the best val epoch is evaluated once on test and written as a run record.

    DATA is anything `headstart extract` accepts; with the same split options (or --splits-from CACHE) the
    images land in the same splits as the cache, so `headstart compare` compares like with like. Multi-label
    DATA (NIH or CheXpert layout, --labels A,B,C, an (N, L) .npz) trains one sigmoid output per finding.
    `torchrun --nproc_per_node=N -m headstart finetune ...` trains with DDP, one GPU per rank; rank 0 writes.
    """
    from headstart.data.options import SourceOptions
    from headstart.data.types import SplitConfig
    from headstart.distributed import env_info
    from headstart.evaluation.table import fmt_ci
    from headstart.finetune.config import AugmentConfig, FinetuneConfig
    from headstart.api import run_finetune

    if train_size is not None and train_fraction is not None:
        raise click.UsageError("give --train-size or --train-fraction, not both")
    if train_fraction is not None:
        train_size = f"{train_fraction * 100:g}%"
    config = FinetuneConfig(
        backbone=backbone, weights=weights, epochs=epochs, lr=lr, batch_size=batch_size, freeze=freeze,
        image_size=image_size, crop=crop, precision=precision, device=device, workers=workers, patience=patience,
        augment=AugmentConfig(enabled=augment, preset=augment_preset), seed=seed, deterministic=deterministic,
        train_size=train_size, uncertain=list(uncertain) or "ignore", blank=blank,
        source=SourceOptions(labels=labels, label_column=label_column, label_sep=label_sep, path_column=path_column,
                             group_column=group_column, split_column=split_column, projection=projection,
                             allow_missing=allow_missing),
    )
    split_config = SplitConfig(val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                               group_pattern=group_pattern)
    try:
        record = run_finetune(data, runs_dir, config=config, split_config=split_config, splits_from=splits_from,
                              resume=resume)
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; rerun the same command with --resume to continue") from None
    if not env_info().is_main:
        return  # every rank holds the same record; one summary line per job
    test = record.metrics["test"]
    timing = record.timing
    scores = (f"macro AUROC {fmt_ci(test.get('auroc'), test.get('auroc_ci'))} over {test.get('n_labels_scored')} "
              f"findings" if "per_label" in test else f"AUROC {fmt_ci(test.get('auroc'), test.get('auroc_ci'))}, "
              f"accuracy {fmt_ci(test.get('accuracy'), test.get('accuracy_ci'))}")
    click.echo(
        f"{record.run_id}: test {scores} | {len(record.history)} epoch(s), "
        f"train {timing['train_seconds']:.1f} s ({timing['images_per_second']:.1f} images/s) on {timing['device']} "
        f"-> {runs_dir}/{record.run_id}/record.json"
    )
