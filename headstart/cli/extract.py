"""`headstart extract`: stage one, from a data folder/manifest/npz to an HDF5 feature cache."""

from __future__ import annotations

import click

from headstart.backbones.names import POOLS
from headstart.cli import Command
from headstart.cli.options import extract_options, source_options
from headstart.data.augment import MAX_TTA, PRESETS


@click.command(cls=Command)
@click.argument("data", type=click.Path(path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(path_type=str), help="Cache file to create or extend.")
@click.option("-b", "--backbone", "backbones", multiple=True, default=("resnet18",), show_default=True,
              help="Backbone to extract (repeat for several; one decode feeds all): NAME (torchvision), timm:NAME, "
                   "xrv:NAME or hf:ORG/NAME. See `headstart backbones`.")
@click.option("--pool", "pools", multiple=True, type=click.Choice(POOLS),
              help="Pooling of the features (repeat for several; default: the backbone's own). Each (backbone, "
                   "layer, pool) is its own feature set, all from one forward pass.")
@click.option("--layer", "layers", multiple=True,
              help="Intermediate block to read, e.g. layer3 or blocks.8 (repeat for several; default: final).")
@click.option("--views", type=click.IntRange(min=0), default=0, show_default=True,
              help="K augmented views per training image, cached beside the plain features (one decode per image); "
                   "`heads --views on` trains on them.")
@click.option("--augment", type=click.Choice(list(PRESETS)), default="light", show_default=True,
              help="Preset the --views are drawn with (light: crop 0.8-1, rotation +-10 deg, brightness/contrast "
                   "+-10 %; no flip unless the name says so).")
@click.option("--tta", type=click.IntRange(min=0, max=MAX_TTA), default=0, show_default=True,
              help="M deterministic test-time views (zoom and corner crops) per val/test image; `heads --tta on` "
                   "averages their probabilities with the plain view's.")
@extract_options
@source_options
def extract(data: str, output: str, backbones: tuple[str, ...], pools: tuple[str, ...], layers: tuple[str, ...],
            engine: str, trust_remote_code: bool, weights: str, image_size: int | None, crop: str,
            batch_size: int, device: str, precision: str, decode: str, workers: int | None, feature_dtype: str,
            val_fraction: float, test_fraction: float, group_pattern: str | None, seed: int,
            on_bad_image: str, overwrite: bool, labels: list[str], label_column: str | None,
            label_sep: str | None, path_column: str | None, group_column: str | None, split_column: str | None,
            projection: str, allow_missing: bool, views: int, augment: str, tta: int) -> None:
    """Run frozen backbones once over DATA and cache their pooled features in OUTPUT (HDF5).

    DATA is a folder with train/val/test class folders (the Kaggle layout), a folder of class folders, a CSV
    manifest (`path,label[,split][,group]`) or a MedMNIST-style .npz. Multi-label: a folder in the NIH ChestX-ray14
    or CheXpert layout, a CSV with --labels A,B,C or --label-column COL --label-sep SEP, an .npz with (N, L)
    labels. An interrupted run resumes when the same command is run again.
    """
    from headstart.api import run_extract
    from headstart.distributed import is_main

    result = run_extract(
        data, output, backbones=list(backbones), pools=list(pools), layers=list(layers), engine=engine,
        trust_remote_code=trust_remote_code, weights=weights, image_size=image_size, crop=crop, batch_size=batch_size,
        device=device, precision=precision, decode=decode, workers=workers, feature_dtype=feature_dtype,
        val_fraction=val_fraction, test_fraction=test_fraction, group_pattern=group_pattern, seed=seed,
        on_bad_image=on_bad_image, overwrite=overwrite, labels=labels, label_column=label_column,
        label_sep=label_sep, path_column=path_column, group_column=group_column, split_column=split_column,
        projection=projection, allow_missing=allow_missing, views=views, augment=augment, tta=tta,
    )
    if not is_main():
        return  # under torchrun, rank 0 speaks for the whole job
    ranks = f" on {result.world_size} ranks" if result.world_size > 1 else ""
    if result.extracted:
        click.echo(f"extracted {', '.join(result.extracted)} for {result.n_images} images in {result.seconds:.1f} s "
                   f"({result.images_per_second:.1f} images/s{ranks}) -> {result.cache_path}")
    if result.already_done:
        click.echo(f"already complete in {result.cache_path}: {', '.join(result.already_done)}")
    if result.skipped:
        shown = ", ".join(result.skipped[:5]) + (" ..." if len(result.skipped) > 5 else "")
        click.echo(f"skipped {len(result.skipped)} unreadable image(s), recorded in the cache: {shown}", err=True)
