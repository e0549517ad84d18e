"""`headstart backbones`: what can be extracted, with size, cost and ImageNet accuracy (offline metadata)."""

from __future__ import annotations

import json

import click

from headstart.cli import Command

_COLUMNS = ("name", "dim", "params (M)", "GFLOPs", "top-1", "weights (* = imagenet default)", "cached")


@click.command(cls=Command)
@click.argument("names", nargs=-1)
@click.option("--all", "show_all", is_flag=True, help="List every torchvision classification model, not the short list.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of records instead of a table.")
def backbones(names: tuple[str, ...], show_all: bool, as_json: bool) -> None:
    """List backbones: feature dim, parameters, GFLOPs and ImageNet top-1 from torchvision's weight metadata.

    NAMES restricts the list to those backbones. `cached` says whether the default ImageNet weights file is
    already in the torch hub cache ($TORCH_HOME), i.e. whether `--weights imagenet` works offline.
    """
    from tqdm import tqdm  # here, not at the top: `headstart --help` imports every command module (0.2 s)

    from headstart.backbones.registry import RECOMMENDED_BACKBONES, backbone_info, check_name, list_backbones

    for name in names:
        check_name(name)
    selected = list(names) or (list_backbones() if show_all else list(RECOMMENDED_BACKBONES))
    infos = [backbone_info(n) for n in tqdm(selected, desc="backbones", unit="model", leave=False, disable=None)]
    if as_json:
        click.echo(json.dumps(infos, indent=2))
        return
    rows = [_row(info) for info in infos]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(_COLUMNS)]
    for line in (_COLUMNS, tuple("-" * w for w in widths), *rows):
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
    if not show_all and not names:
        click.echo(f"\n{len(rows)} of {len(list_backbones())} backbones; `headstart backbones --all` lists every one.")


def _row(info: dict) -> tuple[str, ...]:
    default = (info["default_weights"] or "").rsplit(".", 1)[-1]  # imagenet:ResNet50_Weights.IMAGENET1K_V2
    members = [t.removeprefix("imagenet:") for t in info["weights"]]
    tags = [m + "*" if m == default else m for m in members]
    return (
        info["name"],
        str(info["num_features"]),
        _num(info["params_m"], "{:.1f}"),
        _num(info["gflops"], "{:.2f}"),
        _num(info["top1"], "{:.1f}"),
        ", ".join(tags) or "-",
        "yes" if info["cached"] else "no",
    )


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)
