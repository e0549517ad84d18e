"""The timm provider (`-b timm:NAME[.TAG]`): any of timm's ~1,300 architectures as a frozen feature extractor.

The module is `TimmFeatures`: timm's `forward_features` (the last unpooled map or tokens, passed through an
Identity named `final` so taps can read it) then `forward_head(pre_logits=True)`, i.e. the model's own pooled
feature of `num_features` dims. Preprocessing is timm's data config for the pretrained tag (`resolve_data_config`:
input size, mean, std, interpolation, crop_pct), also for random and file weights.

Input sizes: a model whose pretrained config says `fixed_input_size` (ViTs, Swin...) is rebuilt for another
`--image-size` when its constructor takes `img_size` (timm then resamples pretrained position embeddings, as
torchvision's ViT path does); a model that cannot be rebuilt refuses any size but its own.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import timm
import torch
from timm.data import resolve_data_config
from torch import nn

from headstart.backbones import hubcache
from headstart.backbones.names import BackboneName
from headstart.backbones.providers import package_version
from headstart.backbones.providers.base import (close_names_error, load_strict, meta_probe, meta_stats, seeded,
                                               strip_prefixes)
from headstart.backbones.types import Backbone, Preprocessing, TapPoint
from headstart.backbones.weights import ensure_downloaded, file_sha256, load_state_dict, weights_file
from headstart.errors import ConfigError, WeightsError

log = logging.getLogger(__name__)

PROVIDER = "timm"
# A first look for chest X-rays: small CNNs, ConvNeXt, EfficientNet, and the self-supervised DINOv2 ViTs.
RECOMMENDED = ("resnet18", "resnet50", "densenet121", "efficientnet_b0", "convnext_atto", "convnext_tiny",
               "vit_tiny_patch16_224", "vit_small_patch14_dinov2", "vit_base_patch14_dinov2")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # safetensors first: it cannot hold code


class TimmFeatures(nn.Module):
    """`forward(x) -> (B, num_features)`: timm's pre-logits feature; `final` marks the last unpooled map."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.final = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.final(self.model.forward_features(x)), pre_logits=True)


def list_names(pattern: str | None = None) -> list[str]:
    return sorted(timm.list_models(pattern or ""))


def recommended() -> list[str]:
    return list(RECOMMENDED)


def check_name(parsed: BackboneName) -> None:
    if not timm.is_model(parsed.model):
        raise close_names_error(parsed.model, timm.list_models(), full=f"timm:{parsed.model}",
                                hint="Run `headstart backbones --provider timm --filter 'PATTERN'` for the list",
                                prefix="timm:")
    if parsed.tag and f"{parsed.model}.{parsed.tag}" not in timm.list_pretrained(f"{parsed.model}.*"):
        tags = [n.split(".", 1)[1] for n in timm.list_pretrained(f"{parsed.model}.*")]
        raise ConfigError(f"timm:{parsed.model} has no pretrained tag {parsed.tag!r}; expected one of "
                          f"{', '.join(tags) or '(none: use --weights random)'}")


def pretrained_cfg(parsed: BackboneName) -> dict:
    """timm's pretrained config for the tag (its default tag when none is named); {} for an untrained arch."""
    name = f"{parsed.model}.{parsed.tag}" if parsed.tag else parsed.model
    cfg = timm.models.get_pretrained_cfg(name)
    return cfg.to_dict() if cfg is not None else {}


def preprocessing_from_data_config(data: dict, image_size: int | None = None) -> Preprocessing:
    """timm's resolved data config as headstart data: resize to floor(size / crop_pct), center-crop size."""
    channels, height, _ = data["input_size"]
    size = image_size or height
    if image_size is not None and image_size < 1:
        raise ConfigError(f"--image-size {image_size} is invalid; expected a positive number of pixels")
    if data.get("crop_mode", "center") != "center":
        log.warning("timm's crop_mode %r is approximated by a center crop", data["crop_mode"])
    crop_pct = data.get("crop_pct") or 1.0
    return Preprocessing(input_size=size, resize_size=max(size, math.floor(size / crop_pct)),
                         mean=tuple(data["mean"]), std=tuple(data["std"]), interpolation=data["interpolation"],
                         channels=channels)


def create(parsed: BackboneName, *, weights: str = "imagenet", image_size: int | None = None, seed: int = 0,
           trust_remote_code: bool = False) -> Backbone:
    check_name(parsed)
    cfg = pretrained_cfg(parsed)
    prep = preprocessing_from_data_config(resolve_data_config({}, pretrained_cfg=cfg), image_size)
    kwargs = _size_kwargs(parsed, cfg, prep.input_size)
    meta_probe(lambda: _build(parsed, kwargs, meta=True), prep, name=parsed.full)
    if weights == "random":
        tag, sha, state = "random", "", None
    elif weights == "imagenet":
        path = _pretrained_file(parsed, cfg)
        tag, sha, state = f"imagenet:{parsed.model}.{cfg['tag']}", file_sha256(path), load_state_dict(path)
    else:
        path = weights_file(weights)
        tag, sha, state = f"file:{path.name}", file_sha256(path), load_state_dict(path)
    module = seeded(seed, lambda: _build(parsed, kwargs, meta=False))
    if state is not None:
        _load(module.model, strip_prefixes(state, ("backbone.", "model.")), cfg, source=path, name=parsed.full)
    module.eval().requires_grad_(False)
    model = module.model
    parts = {"provider": PROVIDER, "provider_version": package_version(PROVIDER), "model": parsed.model,
             "pretrained_tag": cfg.get("tag") if weights == "imagenet" else parsed.tag}
    return Backbone(name=parsed.full, module=module, num_features=model.num_features, preprocessing=prep,
                    weights_tag=tag, weights_sha256=sha, provider=PROVIDER, fingerprint_parts=parts,
                    final_tap=TapPoint("final", "output", layout="?", prefix_tokens=_prefix_tokens(model)),
                    layer_root="model", map_layout=_map_layout(model), prefix_tokens=_prefix_tokens(model))


def last_stage(backbone: nn.Module, parsed: BackboneName) -> list[nn.Module]:
    """timm's last feature stage (feature_info) plus every top-level module after it (final norms)."""
    model = backbone.model
    info = getattr(model, "feature_info", None)
    if not info:
        raise ConfigError(f"timm:{parsed.model} names no feature stages; use --freeze none or --freeze backbone")
    path = info[-1]["module"]
    top = path.split(".")[0]
    children = [name for name, _ in model.named_children()]
    after = children[children.index(top) + 1:] if top in children else []
    return [model.get_submodule(path)] + [getattr(model, name) for name in after]


def describe(parsed: BackboneName) -> dict:
    """Offline facts: dim, params and GFLOPs (multiply-adds, as torchvision reports them) from a meta build."""
    check_name(parsed)
    cfg = pretrained_cfg(parsed)
    prep = preprocessing_from_data_config(resolve_data_config({}, pretrained_cfg=cfg))
    dim, params, gflops = meta_stats(lambda: _build(parsed, {}, meta=True), prep)
    tags = [n.split(".", 1)[1] for n in timm.list_pretrained(f"{parsed.model}.*")]
    hub_id = cfg.get("hf_hub_id")
    return {
        "name": parsed.full, "provider": PROVIDER, "num_features": dim,
        "params_m": params, "gflops": gflops, "top1": None,
        "input_size": prep.input_size, "fixed_input_size": bool(cfg.get("fixed_input_size")),
        "default_weights": f"imagenet:{parsed.model}.{cfg['tag']}" if cfg.get("tag") else None,
        "weights": [f"imagenet:{parsed.model}.{t}" for t in tags],
        "cached": bool(hub_id) and hubcache.first_cached(hub_id, _weight_files(cfg)) is not None,
        "file": hub_id,
    }


def _size_kwargs(parsed: BackboneName, cfg: dict, size: int) -> dict:
    """Constructor arguments for `size`: none for a model that takes any size, else `img_size` where timm can
    rebuild the model for it (a ViT must still see whole patches)."""
    native = (cfg.get("input_size") or (3, 224, 224))[-1]
    if size == native or not cfg.get("fixed_input_size"):
        return {}
    try:
        module = _build(parsed, {"img_size": size}, meta=True)
    except TypeError:
        raise ConfigError(f"{parsed.full} takes only {native}x{native} inputs and cannot be rebuilt for "
                          f"--image-size {size}; pass --image-size {native} or leave it out") from None
    patch = getattr(getattr(module.model, "patch_embed", None), "patch_size", None)
    patch = patch[0] if isinstance(patch, (tuple, list)) else patch
    if patch and size % patch:
        raise ConfigError(f"{parsed.full} cuts images into {patch}-px patches; --image-size {size} is not a "
                          f"multiple of {patch} (try {max(patch, size // patch * patch)})")
    return {"img_size": size}


def _build(parsed: BackboneName, kwargs: dict, *, meta: bool) -> TimmFeatures:
    if meta:
        with torch.device("meta"):
            return TimmFeatures(timm.create_model(parsed.model, pretrained=False, num_classes=0, **kwargs))
    return TimmFeatures(timm.create_model(parsed.model, pretrained=False, num_classes=0, **kwargs))


def _weight_files(cfg: dict) -> tuple[str, ...]:
    return (cfg["hf_hub_filename"],) if cfg.get("hf_hub_filename") else WEIGHT_FILES


def _pretrained_file(parsed: BackboneName, cfg: dict):
    what = f"pretrained weights for timm:{parsed.model}.{cfg.get('tag')}"
    if cfg.get("hf_hub_id"):
        return hubcache.fetch_file(cfg["hf_hub_id"], _weight_files(cfg), what=what)
    url = cfg.get("url")
    if not url:
        raise WeightsError(f"timm has no pretrained weights for {parsed.full}; {hubcache.ALTERNATIVES}")
    if url.endswith(".npz"):
        raise WeightsError(f"{what} are a .npz only timm's own loader reads; pick a tag with hub weights "
                           f"(`headstart backbones {parsed.full}`), or {hubcache.ALTERNATIVES}")
    return ensure_downloaded(url, Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1], what=what)


def _load(model: nn.Module, state: dict, cfg: dict, *, source, name: str) -> None:
    """timm's own checkpoint filter for the architecture (position-embedding resampling...), then a strict load."""
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, model)
    classifiers = cfg.get("classifier") or ()
    for head in (classifiers,) if isinstance(classifiers, str) else classifiers:
        state = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    load_strict(model, state, source=source, name=name,
                advice=f"pass weights saved from a timm {name.removeprefix('timm:')}")


def _prefix_tokens(model: nn.Module) -> int:
    return int(getattr(model, "num_prefix_tokens", 0) or 0)


def _map_layout(model: nn.Module) -> str:
    fmt = getattr(model, "output_fmt", "NCHW")
    return "NHWC" if str(getattr(fmt, "value", fmt)).upper() == "NHWC" else "NCHW"
