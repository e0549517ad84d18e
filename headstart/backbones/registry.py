"""Backbone registry: a `-b` name -> its provider -> a frozen pooled-feature extractor or a trainable classifier.

The name's prefix picks the provider (`NAME` torchvision, `timm:NAME[.TAG]`, `xrv:NAME`, `hf:ORG/NAME`; see
`names`). A provider module, and the package behind it, is imported only when a name of that provider is used.
Every provider returns the same `Backbone` record, whose `module(x)` is the pooled-feature function: extraction
runs it frozen, and fine-tuning wraps it as `nn.Sequential(backbone=<that module>, head=nn.Linear)`, so a
frozen-backbone fine-tune and a head on cached features see exactly the same function, whatever the provider.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import torch
from torch import nn

from headstart.backbones import providers
from headstart.backbones.names import BackboneName, parse_backbone
from headstart.backbones.providers.torchvision import RECOMMENDED_BACKBONES, preprocessing_for
from headstart.backbones.types import Backbone, Preprocessing
from headstart.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["RECOMMENDED_BACKBONES", "backbone_info", "check_name", "create_backbone", "create_model",
           "list_backbones", "preprocessing_for", "split_parameters"]


def provider_of(name: str) -> tuple[BackboneName, object]:
    """The parsed name and its provider module (DependencyError when the provider's extra is missing)."""
    parsed = parse_backbone(name)
    return parsed, providers.load(parsed.provider)


def list_backbones(provider: str = "torchvision", pattern: str | None = None) -> list[str]:
    """Every model name of `provider` (full names, with prefix), optionally filtered by an fnmatch pattern."""
    if provider not in providers.PROVIDER_INFO:
        raise ConfigError(f"unknown provider {provider!r}; expected one of {', '.join(providers.PROVIDER_INFO)}")
    module = providers.load(provider)
    prefix = "" if provider == "torchvision" else f"{provider}:"
    return [prefix + n for n in module.list_names(pattern)]


def recommended_backbones(provider: str) -> list[str]:
    """The short list `headstart backbones` shows for a provider (full names)."""
    prefix = "" if provider == "torchvision" else f"{provider}:"
    return [prefix + n for n in providers.load(provider).recommended()]


def check_name(name: str) -> None:
    """ConfigError (exit 2) naming close matches when `name` is not a backbone its provider knows."""
    parsed, module = provider_of(name)
    module.check_name(parsed)


def create_backbone(name: str, *, weights: str = "imagenet", image_size: int | None = None, seed: int = 0,
                    trust_remote_code: bool = False) -> Backbone:
    """A frozen feature extractor (eval mode, no grad) mapping a normalised (B, C, S, S) batch to (B, D).

    `weights` is `imagenet` (the provider's default pretrained weights, from its cache; downloaded unless
    offline), `random` (seeded: a resumed extraction rebuilds the identical network) or a local `.pth` /
    `.safetensors` state dict. `image_size` None uses the model's own size; a model with a fixed input refuses
    any other. `trust_remote_code` only matters for `hf:` models, and is recorded in the fingerprint parts.
    """
    parsed, module = provider_of(name)
    backbone = module.create(parsed, weights=weights, image_size=image_size, seed=seed,
                             trust_remote_code=trust_remote_code)
    backbone.name = parsed.full
    backbone.provider = parsed.provider
    return backbone


def create_model(name: str, *, num_classes: int, weights: str = "imagenet", image_size: int | None = None,
                 seed: int = 0, trust_remote_code: bool = False) -> tuple[nn.Module, Preprocessing, dict]:
    """A trainable classifier for fine-tuning: `nn.Sequential(backbone=<create_backbone's module>, head=Linear)`.

    `model.backbone(x)` is the pooled-feature function that extraction caches, so a `--freeze backbone`
    fine-tune trains exactly the head that cached features would. The head is freshly initialised from `seed`.
    Returns (model in train mode with every parameter trainable, preprocessing, weights/feature info).
    """
    if num_classes < 2:
        raise ConfigError(f"num_classes {num_classes} is invalid; a classifier needs at least 2 classes")
    backbone = create_backbone(name, weights=weights, image_size=image_size, seed=seed,
                               trust_remote_code=trust_remote_code)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Linear(backbone.num_features, num_classes)
    model = nn.Sequential(OrderedDict(backbone=backbone.module, head=head))
    model.requires_grad_(True).train()
    info = {"weights_tag": backbone.weights_tag, "weights_sha256": backbone.weights_sha256,
            "num_features": backbone.num_features}
    if backbone.fingerprint_parts:
        info["fingerprint_parts"] = dict(backbone.fingerprint_parts)
    return model, backbone.preprocessing, info


def split_parameters(model: nn.Module, name: str) -> dict[str, list[nn.Parameter]]:
    """Parameters of a `create_model` model in three groups for `--freeze`: head, last_stage, rest.

    `--freeze backbone` trains `head`; `--freeze partial` trains `head` + `last_stage` (the provider names it:
    e.g. resnet layer4, densenet denseblock4+norm5, the last ViT block + final norm); `--freeze none` trains all.
    """
    parsed, module = provider_of(name)
    head = list(model.head.parameters())
    last = [p for m in module.last_stage(model.backbone, parsed) for p in m.parameters()]
    taken = {id(p) for p in head + last}
    last = list({id(p): p for p in last}.values())  # a module listed twice must not train twice
    rest = [p for p in model.backbone.parameters() if id(p) not in taken]
    return {"head": head, "last_stage": last, "rest": rest}


def backbone_info(name: str) -> dict:
    """Offline facts for `headstart backbones`: dim, params, GFLOPs, input size, weight tags, cached or not."""
    parsed, module = provider_of(name)
    info = module.describe(parsed)
    info["name"] = parsed.full
    return info
