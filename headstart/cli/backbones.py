"""`headstart backbones`: what can be extracted, with size, cost and ImageNet accuracy (offline metadata)."""

from __future__ import annotations

import json

import click
from tqdm import tqdm

from headstart.cli import Command

_COLUMNS = [("name", "name"), ("dim", "dim"), ("params_m", "params (M)"), ("gflops", "GFLOPs"), ("top1", "top-1"),
            ("weights", "weights (* = imagenet default)"), ("cached", "cached")]


@click.command(cls=Command)
@click.argument("names", nargs=-1)
@click.option("--all", "show_all", is_flag=True, help="List every torchvision classification model, not the short list.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of records instead of a table.")
def backbones(names: tuple[str, ...], show_all: bool, as_json: bool) -> None:
    """List backbones: feature dim, parameters, GFLOPs and ImageNet top-1 from torchvision's weight metadata.

    NAMES restricts the list to those backbones. `cached` says whether the default ImageNet weights file is
    already in the torch hub cache ($TORCH_HOME), i.e. whether `--weights imagenet` works offline.
    """
    from headstart.backbones.registry import RECOMMENDED_BACKBONES, backbone_info, check_name, list_backbones
    from headstart.evaluation.table import format_table

    for name in names:
        check_name(name)
    selected = list(names) or (list_backbones() if show_all else list(RECOMMENDED_BACKBONES))
    infos = [backbone_info(n) for n in tqdm(selected, desc="backbones", unit="model", leave=False, disable=None)]
    if as_json:
        click.echo(json.dumps(infos, indent=2))
        return
    rows = [_row(info) for info in infos]
    click.echo(format_table(rows, _COLUMNS))
    if not show_all and not names:
        click.echo(f"\n{len(rows)} of {len(list_backbones())} backbones; `headstart backbones --all` lists every one.")


def _row(info: dict) -> dict[str, str | int]:
    from headstart.evaluation.table import fmt_value

    default = (info["default_weights"] or "").rsplit(".", 1)[-1]  # imagenet:ResNet50_Weights.IMAGENET1K_V2
    members = [t.removeprefix("imagenet:") for t in info["weights"]]
    tags = [m + "*" if m == default else m for m in members]
    return {
        "name": info["name"],
        "dim": info["num_features"],
        "params_m": fmt_value(info["params_m"], digits=1),
        "gflops": fmt_value(info["gflops"], digits=2),
        "top1": fmt_value(info["top1"], digits=1),
        "weights": ", ".join(tags) or "-",
        "cached": "yes" if info["cached"] else "no",
    }
