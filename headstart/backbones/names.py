"""Backbone names and feature-set names: pure string rules, no torch, no provider package.

A backbone name says which provider builds it (`NAME` is torchvision, `timm:NAME[.TAG]`, `xrv:NAME`,
`hf:ORG/NAME`). A feature set is one (backbone, layer, pool) triple; its name is the stable cache key:

    feature_set_name("resnet18")                          -> "resnet18"
    feature_set_name("resnet18", layer="layer3", pool="gem") -> "resnet18:layer3:gem"
    feature_set_name("timm:vit_small_patch14_dinov2.lvd142m", pool="cls")
                                                          -> "timm:vit_small_patch14_dinov2.lvd142m:cls"
    feature_set_name("hf:microsoft/rad-dino", pool="mean") -> "hf:microsoft--rad-dino:mean"

The default layer (`final`) and the default pool (`default`) are left out, so a plain torchvision backbone keeps
the set name it has always had. `/` (an HDF5 path separator) becomes `--`, as in the Hugging Face hub cache; hub
repository names never contain `--`, so the mapping can be undone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from headstart.errors import ConfigError

PROVIDERS = ("torchvision", "timm", "xrv", "hf")  # prefixes; torchvision is the one written without a prefix
POOLS = ("default", "cls", "mean", "gem", "cls+mean")
DEFAULT_POOL = "default"  # the provider's own pooled feature (torchvision minus its classifier, timm pre-logits...)
FINAL_LAYER = "final"  # the backbone's last feature map, the one its default pool reads
# The plain view's geometry (`Preprocessing.crop`): center = resize the shorter side, centre-crop (torchvision's
# eval recipe); full = resize the whole image to the square; pad = letterbox (fit the longer side, pad with black).
CROPS = ("center", "full", "pad")

_HF_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_PLAIN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_LAYER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class BackboneName:
    """A parsed `-b` value."""

    provider: str  # one of PROVIDERS
    model: str  # the provider's own name: "resnet18", "vit_small_patch14_dinov2", "microsoft/rad-dino"
    tag: str | None = None  # timm's pretrained tag ("lvd142m"), else None

    @property
    def full(self) -> str:
        """The name as the user writes it, with its provider prefix (none for torchvision)."""
        model = f"{self.model}.{self.tag}" if self.tag else self.model
        return model if self.provider == "torchvision" else f"{self.provider}:{model}"


def parse_backbone(name: str) -> BackboneName:
    """Split `-b NAME` into provider, model and tag; ConfigError (exit 2) on a malformed name."""
    expected = "expected NAME (torchvision), timm:NAME[.TAG], xrv:NAME or hf:ORG/NAME"
    prefix, sep, rest = name.partition(":")
    if not sep:
        if not _PLAIN_RE.match(name):
            raise ConfigError(f"backbone name {name!r} is malformed; {expected}")
        return BackboneName("torchvision", name)
    if prefix not in PROVIDERS or prefix == "torchvision":
        raise ConfigError(f"unknown backbone provider {prefix!r} in {name!r}; {expected}")
    if prefix == "hf":
        if not _HF_REPO_RE.match(rest) or "--" in rest or ".." in rest:
            raise ConfigError(f"backbone name {name!r} is malformed; a Hugging Face model is hf:ORG/NAME, "
                              "e.g. hf:microsoft/rad-dino")
        return BackboneName("hf", rest)
    if not _PLAIN_RE.match(rest):
        raise ConfigError(f"backbone name {name!r} is malformed; {expected}")
    if prefix == "timm":
        model, _, tag = rest.partition(".")
        return BackboneName("timm", model, tag or None)
    return BackboneName(prefix, rest)


def check_pool(pool: str) -> None:
    if pool not in POOLS:
        raise ConfigError(f"--pool {pool!r} is unknown; expected one of {', '.join(POOLS)}")


def check_layer(layer: str) -> None:
    if not _LAYER_RE.match(layer):
        raise ConfigError(f"--layer {layer!r} is malformed; expected a module path such as layer3 or blocks.8")


def feature_set_name(backbone: str, *, layer: str | None = None, pool: str = DEFAULT_POOL) -> str:
    """The cache's name for one (backbone, layer, pool) feature set; see the module docstring for the rule."""
    check_pool(pool)
    parts = [backbone.replace("/", "--")]
    if layer not in (None, FINAL_LAYER):
        check_layer(layer)
        parts.append(layer)
    if pool != DEFAULT_POOL:
        parts.append(pool)
    return ":".join(parts)
