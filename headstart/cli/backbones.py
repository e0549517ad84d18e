"""`headstart backbones`: what can be extracted, per installed provider, with size, cost and accuracy (offline)."""

from __future__ import annotations

import json

import click

from headstart.cli import Command

_COLUMNS = ("name", "dim", "params (M)", "GFLOPs", "top-1", "weights (* = imagenet default)", "cached")
STATS_LIMIT = 60  # beyond this many non-torchvision models, list names only: each row costs a meta-device build
_PROVIDERS = ("torchvision", "timm", "xrv", "hf")
MAX_TAGS = 3  # weight tags shown per row; --json lists them all


@click.command(cls=Command)
@click.argument("names", nargs=-1)
@click.option("--provider", type=click.Choice(_PROVIDERS), default=None,
              help="Only this provider's models (default: every installed provider).")
@click.option("--filter", "pattern", default=None, metavar="GLOB",
              help="Every model whose name matches GLOB, e.g. 'vit_*dinov2*' (implies the full list).")
@click.option("--all", "show_all", is_flag=True, help="List every model of each provider, not the short list.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of records instead of a table.")
def backbones(names: tuple[str, ...], provider: str | None, pattern: str | None, show_all: bool,
              as_json: bool) -> None:
    """List backbones: feature dim, parameters, GFLOPs and ImageNet top-1 where the provider gives them.

    NAMES (e.g. resnet18, timm:convnext_atto, xrv:densenet121-res224-all, hf:microsoft/rad-dino) restricts the
    list to those backbones. `cached` says whether the default pretrained weights are already on disk (torch hub
    cache, Hugging Face hub cache, torchxrayvision's folder), i.e. whether `--weights imagenet` works offline.
    """
    from tqdm import tqdm  # here, not at the top: `headstart --help` imports every command module (0.2 s)

    from headstart.backbones import catalog, providers

    if names:  # checking a name needs its provider's model list: the live registry
        from headstart.backbones.registry import check_name

        for name in names:
            check_name(name)
    chosen = [provider] if provider else providers.installed_providers()
    if provider and not providers.is_installed(provider):
        providers.load(provider)  # a missing extra: one line with the pip command, exit 1
    if names:
        selected = list(names)
    elif show_all or pattern is not None:
        selected = [n for p in chosen for n in _registry().list_backbones(p, pattern)]
    else:  # the short lists, from the catalogue where it matches the installed provider (no model code imported)
        selected = [n for p in chosen for n in (catalog.recommended(p) or _registry().recommended_backbones(p))]
    costly = [n for n in selected if ":" in n]
    described = set(selected) if len(costly) <= STATS_LIMIT else {n for n in selected if ":" not in n}
    infos = [catalog.backbone_info(n) if n in described else _bare(n)
             for n in tqdm(selected, desc="backbones", unit="model", leave=False, disable=None)]
    if as_json:
        click.echo(json.dumps(infos, indent=2))
        return
    rows = [_row(info) for info in infos]
    if rows:
        from headstart.evaluation.table import format_table

        click.echo(format_table([dict(zip(_COLUMNS, r)) for r in rows], [(c, c) for c in _COLUMNS]))
    else:
        click.echo(f"no backbone matches {pattern!r}" if pattern else "no backbones")
    if len(described) < len(selected):
        click.echo(f"\n{len(selected)} models: dim, params and GFLOPs are shown for at most {STATS_LIMIT} provider "
                   "models at once; pass a narrower --filter or NAMES")
    if not (show_all or pattern or names):
        totals = {p: catalog.count(p) for p in chosen}
        counts = ", ".join(f"{p} {sum(_provider(n) == p for n in selected)} of "
                           f"{totals[p] if totals[p] is not None else len(_registry().list_backbones(p))}"
                           for p in chosen)
        click.echo(f"\n{counts}; `--all`, or `--provider P --filter 'GLOB'`, lists more.")
    missing = [p for p in _PROVIDERS if not providers.is_installed(p)]
    if missing and not provider and not names:
        click.echo("not installed: " + ", ".join(f"{p} (pip install 'headstart[{providers.PROVIDER_INFO[p].extra}]')"
                                                 for p in missing))


def _registry():
    """The live registry (imports torch and, per provider, its model library): only where the catalogue cannot answer."""
    from headstart.backbones import registry

    return registry


def _provider(name: str) -> str:
    return name.split(":", 1)[0] if ":" in name else "torchvision"


def _bare(name: str) -> dict:
    return {"name": name, "provider": _provider(name), "num_features": None, "params_m": None, "gflops": None,
            "top1": None, "default_weights": None, "weights": [], "cached": None}


def _tag(weights: str, provider: str) -> str:
    """A weights tag as the table shows it: the enum member (torchvision) or timm's tag; `pretrained` otherwise."""
    tag = weights.removeprefix("imagenet:")
    return tag.rsplit(".", 1)[-1] if provider in ("torchvision", "timm") else "pretrained"


def _row(info: dict) -> tuple[str, ...]:
    provider = info.get("provider", "torchvision")
    default = _tag(info["default_weights"], provider) if info["default_weights"] else None
    tags = [_tag(t, provider) for t in info["weights"]]
    tags = [t + "*" if t == default else t for t in tags]
    if len(tags) > MAX_TAGS:  # timm's resnet50 has 19 tags: the default and a count keep the table readable
        shown = [t for t in tags if t.endswith("*")][:1] + [t for t in tags if not t.endswith("*")]
        tags = shown[:MAX_TAGS] + [f"+{len(tags) - MAX_TAGS} more"]
    return (
        info["name"],
        _num(info["num_features"], "{}"),
        _num(info["params_m"], "{:.1f}"),
        _num(info["gflops"], "{:.2f}"),
        _num(info["top1"], "{:.1f}"),
        ", ".join(tags) or "-",
        "-" if info["cached"] is None else ("yes" if info["cached"] else "no"),
    )


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)
