"""The short list `headstart backbones` prints, stored as data, so printing it imports no model code.

Describing a backbone (feature dim, parameters, GFLOPs) means building it on the meta device, and that means
importing torch, timm, torchxrayvision and transformers: about 7 s on a 2-core CPU for a table. The facts are
fixed for a given provider version, so `catalog.json` keeps them per provider, stamped with the version they were
computed with. A provider whose installed version differs (or a name not in the file) is described live, as before.
What depends on this machine, whether the default weights are on disk, is checked here with path look-ups only.

Regenerate after changing a provider or its short list: `python -m headstart.backbones.catalog`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from headstart.backbones import providers

CATALOG_FILE = Path(__file__).with_name("catalog.json")
FORMAT = 1


def _torch_hub_dir() -> Path:
    """torch.hub.get_dir() without importing torch: $TORCH_HOME/hub, TORCH_HOME defaulting to $XDG_CACHE_HOME/torch."""
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(os.path.expanduser(os.environ.get("TORCH_HOME") or os.path.join(xdg, "torch"))) / "hub"


def _xrv_dir() -> Path:
    return Path(os.path.expanduser(os.path.join("~", ".torchxrayvision", "models_data")))


def _weights_on_disk(probe: dict) -> tuple[bool, str | None]:
    """(cached, file) for one row, from where its provider keeps the default weights."""
    if "torch_hub" in probe:
        path = _torch_hub_dir() / "checkpoints" / probe["torch_hub"]
        return path.is_file(), str(path)
    if "xrv" in probe:
        path = _xrv_dir() / probe["xrv"]
        return path.is_file(), str(path)
    if "hf_hub" in probe:
        from headstart.backbones import hubcache

        return hubcache.first_cached(probe["hf_hub"], tuple(probe["files"])) is not None, probe["hf_hub"]
    return False, None


def _block(provider: str) -> dict | None:
    """The provider's stored block when it was computed with the installed version, else None."""
    try:
        stored = json.loads(CATALOG_FILE.read_text())
    except (OSError, ValueError):
        return None
    block = stored.get("providers", {}).get(provider) if stored.get("format") == FORMAT else None
    if not block or block.get("version") != providers.package_version(provider):
        return None
    return block


def recommended(provider: str) -> list[str] | None:
    """The provider's short list (full names) from the catalogue, or None when it must be asked live."""
    block = _block(provider)
    return list(block["recommended"]) if block else None


def count(provider: str) -> int | None:
    """How many models the provider lists; None when only the live provider knows (hf: the hub cache's models)."""
    block = _block(provider)
    if not block:
        return None
    if provider == "hf":  # hf lists its short list plus every model already in the hub cache
        from headstart.backbones import hubcache

        return len({n.split(":", 1)[1] for n in block["recommended"]} | set(hubcache.cached_repos()))
    return block["count"]


def stored_info(name: str) -> dict | None:
    """`registry.backbone_info(name)` from the catalogue, or None when the catalogue cannot answer for it."""
    provider = name.split(":", 1)[0] if ":" in name else "torchvision"
    block = _block(provider)
    row = block["rows"].get(name) if block else None
    if row is None:
        return None
    if provider == "hf":  # a snapshot in the hub cache gives dim, params and GFLOPs: only a live build reads it
        from headstart.backbones import hubcache

        if hubcache.cached_file(name.split(":", 1)[1], "config.json") is not None:
            return None
    info = {key: value for key, value in row.items() if key != "probe"}
    info["cached"], info["file"] = _weights_on_disk(row.get("probe", {}))
    return info


def backbone_info(name: str) -> dict:
    """What `headstart backbones` shows for `name`: the stored row when it matches the installed provider, else the
    live `registry.backbone_info` (which imports the provider and builds the model on the meta device)."""
    info = stored_info(name)
    if info is not None:
        return info
    from headstart.backbones.registry import backbone_info as live

    return live(name)


def _probe(provider: str, info: dict) -> dict:
    """Where a row's default weights live, in the form `_weights_on_disk` reads."""
    file = info.get("file")
    if provider == "torchvision" and file:
        return {"torch_hub": Path(file).name}
    if provider == "xrv" and file:
        return {"xrv": Path(file).name}
    if provider == "timm" and file:
        from headstart.backbones.providers import timm as timm_provider
        from headstart.backbones.names import parse_backbone

        cfg = timm_provider.pretrained_cfg(parse_backbone(info["name"]))
        return {"hf_hub": file, "files": list(timm_provider._weight_files(cfg))}
    return {}


def build() -> dict:
    """Describe every installed provider's short list live (slow: imports every provider)."""
    from headstart.backbones.registry import backbone_info, list_backbones, recommended_backbones

    blocks = {}
    for provider in providers.installed_providers():
        names = recommended_backbones(provider)
        rows = {}
        for name in names:
            info = backbone_info(name)
            rows[name] = {key: value for key, value in info.items() if key not in ("cached", "file")}
            rows[name]["probe"] = _probe(provider, info)
        blocks[provider] = {"version": providers.package_version(provider), "recommended": names, "rows": rows,
                            "count": None if provider == "hf" else len(list_backbones(provider))}
    return {"format": FORMAT, "providers": blocks}


if __name__ == "__main__":
    CATALOG_FILE.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {CATALOG_FILE}")
