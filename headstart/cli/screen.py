"""`headstart screen`: successive halving over backbones; only the survivors are extracted on all the data."""

from __future__ import annotations

import click

from headstart.cli import Command
from headstart.cli.options import extract_options, label_policy_options, source_options
from headstart.heads import HEADS, SWEEP_NAMES


@click.command(cls=Command)
@click.argument("data", type=click.Path(path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(path_type=str),
              help="Cache file for the survivors; the rounds go to CACHE.screen.json.")
@click.option("-b", "--backbone", "backbones", multiple=True, required=True,
              help="Candidate backbone (repeat: -b A -b B -b C). See `headstart backbones`.")
@extract_options
@source_options
@click.option("--keep", type=click.IntRange(min=1), default=1, show_default=True,
              help="Survivors to extract on all rows.")
@click.option("--head", type=click.Choice(HEADS), default="logreg", show_default=True,
              help="Head whose sweep ranks the candidates by val AUROC.")
@click.option("--sweep", type=click.Choice(SWEEP_NAMES), default="quick", show_default=True, help="Its grid.")
@click.option("--fraction", type=click.FloatRange(0, 1, min_open=True), default=0.1, show_default=True,
              help="Share of train+val in round 1 (whole patients, stratified); it doubles every round.")
@click.option("--min-images", type=click.IntRange(min=1), default=200, show_default=True,
              help="Round 1 sees at least this many images.")
@click.option("--n-boot", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Bootstrap resamples behind each val AUROC interval.")
@label_policy_options
def screen(data: str, output: str, backbones: tuple[str, ...], engine: str, trust_remote_code: bool, weights: str,
           image_size: int | None, crop: str, batch_size: int, device: str, precision: str, decode: str, workers: int | None,
           feature_dtype: str, val_fraction: float, test_fraction: float, group_pattern: str | None, seed: int, on_bad_image: str,
           overwrite: bool, keep: int, head: str, sweep: str, fraction: float, min_images: int, n_boot: int,
           uncertain: tuple[str, ...], blank: str, **source) -> None:
    """Race the candidate backbones on growing subsets of DATA; extract only the survivors into OUTPUT.

    Round 1 extracts every candidate on a tenth of train+val (one decode per image), sweeps the head and ranks
    by val AUROC with bootstrap intervals. The bottom half, and any candidate whose interval lies below the
    leader's, drop out; the subset doubles; until --keep remain. Rows extracted in a round are reused by the
    next and by the final extraction: no image passes twice through one backbone. Losers leave no feature set.
    Multi-label data (an NIH or CheXpert folder) is ranked by val macro AUROC over the findings.
    """
    from headstart.api import run_screen
    from headstart.studies.screen import screen_table

    result = run_screen(
        data, output, backbones=list(backbones), engine=engine, trust_remote_code=trust_remote_code, weights=weights,
        image_size=image_size, crop=crop, batch_size=batch_size, device=device, precision=precision, decode=decode,
        workers=workers, feature_dtype=feature_dtype,
        val_fraction=val_fraction, test_fraction=test_fraction, group_pattern=group_pattern, seed=seed,
        on_bad_image=on_bad_image, overwrite=overwrite, keep=keep, head=head, sweep=sweep, fraction=fraction,
        min_images=min_images, n_boot=n_boot, uncertain=list(uncertain) or "ignore", blank=blank, **source,
    )
    click.echo(screen_table(result.document))
    click.echo(f"rounds: {result.screen_path}")
