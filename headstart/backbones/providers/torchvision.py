"""The torchvision provider (`-b NAME`): a torchvision classification model name -> a frozen pooled-feature extractor.

Every model in `torchvision.models.list_models(module=torchvision.models)` works by name (timm's `create_model`
idea, over torchvision's own builders). The feature module is the torchvision model with its ImageNet layer
replaced by Identity (see `surgery`), so the same object serves both stages: extraction runs it frozen, and
fine-tuning wraps it as `nn.Sequential(backbone=<that module>, head=nn.Linear)`. A frozen-backbone fine-tune and
a head on cached features therefore see exactly the same function.

Input sizes: convolutional models take any size down to their torchvision `min_size` (alexnet 63, inception_v3
75, squeezenet 17-21, densenet 29, vgg/convnext 32 px...). ViTs have a fixed token grid; they are built for the
requested size (a multiple of the patch size) and pretrained position embeddings are interpolated. swin/maxvit
cannot take small inputs (maxvit needs a multiple of 224; swin's windows need >= ~224). An impossible size is
found by a forward pass on the meta device (no compute) and reported as a ConfigError.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
import re

import torch
import torchvision
from torch import nn
from torch.overrides import TorchFunctionMode
from torchvision.models import get_model_builder
from torchvision.models._api import WeightsEnum
from torchvision.models.vision_transformer import interpolate_embeddings

from headstart.backbones.names import BackboneName
from headstart.backbones.surgery import AUX_PREFIXES, Classifier, last_stage_modules, strip_classifier
from headstart.backbones.types import Backbone, Preprocessing, TapPoint
from headstart.backbones.weights import (ResolvedWeights, default_weights, hub_checkpoint_path, is_cached,
                                         resolve_weights, select_enum)
from headstart.errors import ConfigError, WeightsError, one_line

log = logging.getLogger(__name__)

PROVIDER = "torchvision"

# What `headstart backbones` shows by default: small-to-mid models that are sensible first tries on medical
# images (cheap CNNs, the densenets of CheXNet fame, efficientnets, and one modern CNN/ViT/Swin each).
RECOMMENDED_BACKBONES = (
    "resnet18", "resnet34", "resnet50", "densenet121", "densenet169", "efficientnet_b0", "efficientnet_b1",
    "efficientnet_b2", "efficientnet_b3", "convnext_tiny", "convnext_small", "vit_b_16", "swin_t",
    "mobilenet_v3_large", "regnet_y_800mf",
)


def list_names(pattern: str | None = None) -> list[str]:
    """Every torchvision classification model name (matching the fnmatch `pattern`), sorted."""
    names = sorted(torchvision.models.list_models(module=torchvision.models))
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)] if pattern else names


def recommended() -> list[str]:
    return list(RECOMMENDED_BACKBONES)


def check_name(parsed: BackboneName) -> None:
    """ConfigError naming close matches when `name` is not a registered backbone."""
    name = parsed.model
    names = list_names()
    if name in names:
        return
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ConfigError(f"unknown backbone {name!r}; {hint}Run `headstart backbones` for the list")


def preprocessing_for(weights: WeightsEnum | None, *, image_size: int | None = None) -> Preprocessing:
    """The weights' eval transform as data; `image_size` rescales the crop and keeps the resize/crop ratio."""
    if weights is None:
        prep = Preprocessing()
    else:
        t = weights.transforms()
        prep = Preprocessing(input_size=t.crop_size[0], resize_size=t.resize_size[0], mean=tuple(t.mean),
                             std=tuple(t.std), interpolation=t.interpolation.value)
    return prep.for_size(image_size)


def create(parsed: BackboneName, *, weights: str = "imagenet", image_size: int | None = None, seed: int = 0,
           trust_remote_code: bool = False) -> Backbone:
    """A frozen feature extractor (eval mode, no grad) mapping a normalised (B, 3, S, S) batch to (B, D).

    `weights` is `imagenet`, `imagenet:<MEMBER>`, `random` or a state-dict path. Random weights are drawn from
    `seed` alone, so a resumed extraction rebuilds the identical network.
    """
    check_name(parsed)
    name = parsed.model
    prep = preprocessing_for(select_enum(name, weights), image_size=image_size)
    skeleton, classifier = _build(name, input_size=prep.input_size, device=torch.device("meta"))
    _probe(skeleton, name, input_size=prep.input_size, num_features=classifier.num_features)
    resolved = resolve_weights(name, weights)
    if resolved.state_dict is None:
        module, classifier = _build(name, input_size=prep.input_size, seed=seed)
    else:
        module = _load(skeleton, resolved, classifier=classifier, name=name, input_size=prep.input_size)
    module.eval().requires_grad_(False)
    log.debug("%s: %d features, weights %s, input %d px", name, classifier.num_features, resolved.tag,
              prep.input_size)
    return Backbone(name=name, module=module, num_features=classifier.num_features, preprocessing=prep,
                    weights_tag=resolved.tag, weights_sha256=resolved.sha256, final_tap=_final_tap(name, module),
                    map_layout="NHWC" if name.startswith("swin") else "NCHW",
                    prefix_tokens=1 if name.startswith("vit_") else 0)


def last_stage(backbone: nn.Module, parsed: BackboneName) -> list[nn.Module]:
    return last_stage_modules(backbone, parsed.model)


def describe(parsed: BackboneName) -> dict:
    """Offline facts for `headstart backbones`: feature dim (from a meta-device build), size, cost, accuracy."""
    check_name(parsed)
    name = parsed.model
    enum = default_weights(name)
    prep = preprocessing_for(enum)
    _, classifier = _build(name, input_size=prep.input_size, device=torch.device("meta"))
    meta = enum.meta if enum is not None else {}
    top1 = meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
    return {
        "name": name,
        "provider": PROVIDER,
        "num_features": classifier.num_features,
        "params_m": round(meta["num_params"] / 1e6, 1) if "num_params" in meta else None,
        "gflops": meta.get("_ops"),
        "top1": top1,
        "input_size": prep.input_size,
        "default_weights": f"imagenet:{enum}" if enum is not None else None,
        "weights": [f"imagenet:{m.name}" for m in type(enum)] if enum is not None else [],
        "cached": is_cached(enum) if enum is not None else False,
        "file": str(hub_checkpoint_path(enum)) if enum is not None else None,
    }


def _final_tap(name: str, module: nn.Module) -> TapPoint | None:
    """Where the last feature map is, for pools other than `default`; None where torchvision pools in code."""
    if name.startswith("vit_"):
        return TapPoint("encoder", "output", "NLC", prefix_tokens=1)  # tokens after the final LayerNorm
    if name.startswith("densenet"):
        return TapPoint("features", "output", "NCHW", relu=True)  # forward() applies relu, then pools
    if isinstance(getattr(module, "avgpool", None), nn.AdaptiveAvgPool2d):
        return TapPoint("avgpool", "input", "NCHW")  # swin permutes to NCHW before its avgpool
    return None


def _arch_kwargs(name: str, *, input_size: int) -> dict:
    """Builder arguments that make the architecture match the weights and the input size, whatever the weights.

    googlenet/inception_v3 always get torchvision's pretrained settings (`transform_input=True`, no aux heads),
    so random, ImageNet and file weights share one architecture and any of their state dicts fits the others.
    """
    if name.startswith("vit_"):
        patch = int(re.search(r"_(\d+)$", name).group(1))  # type: ignore[union-attr]
        if input_size % patch:
            raise ConfigError(f"{name} cuts images into {patch}-px patches; --image-size {input_size} is not a "
                              f"multiple of {patch} (try {max(patch, input_size // patch * patch)})")
        return {"image_size": input_size}
    if name.startswith("maxvit"):
        return {"input_size": (input_size, input_size)}
    if name in ("googlenet", "inception_v3"):
        return {"aux_logits": False, "transform_input": True, "init_weights": True}
    return {}


def _build(name: str, *, input_size: int, device: torch.device | None = None,
           seed: int = 0) -> tuple[nn.Module, Classifier]:
    """The stripped architecture; on the meta device (shapes only, fast) or on CPU with seeded random init."""
    builder = get_model_builder(name)
    kwargs = _arch_kwargs(name, input_size=input_size)
    if device is not None and device.type == "meta":
        try:
            with _MetaAllocations():
                model = builder(weights=None, **kwargs).to(device)
        except (AssertionError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"{name} cannot take {input_size}x{input_size} inputs ({one_line(exc)}); "
                              "pass another --image-size or backbone") from None
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = builder(weights=None, **kwargs)
    return model, strip_classifier(model)


class _MetaAllocations(TorchFunctionMode):
    """Allocate tensors on the meta device, but only in the factories layers use for parameters and buffers.

    `with torch.device("meta")` would also move the builders' own arithmetic there (regnet computes its stage
    widths with torch ops and `.tolist()`), which cannot run without data.
    """

    _FACTORIES = frozenset({torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn})
    _INITS = frozenset({"normal_", "uniform_", "fill_", "zero_", "erfinv_", "mul_", "add_", "clamp_", "copy_"})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if args and isinstance(args[0], torch.Tensor) and args[0].is_meta and func.__name__ in self._INITS:
            return args[0]  # random init of a meta tensor is a no-op, but slow through torch's reference ops
        kwargs = dict(kwargs or {})
        if func in self._FACTORIES and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def _probe(model: nn.Module, name: str, *, input_size: int, num_features: int) -> None:
    """Shape-check one forward pass on the meta device, so an impossible input size fails before any work."""
    x = torch.empty(2, 3, input_size, input_size, device="meta")
    try:
        with torch.no_grad():
            out = model.eval()(x)
    except Exception as exc:  # noqa: BLE001 - every shape failure means "this size does not fit this model"
        raise ConfigError(f"{name} cannot take {input_size}x{input_size} inputs ({one_line(exc)}); "
                          "pass a larger --image-size or another backbone") from None
    if tuple(out.shape) != (2, num_features):  # a bug in the surgery, not a user error
        raise RuntimeError(f"{name} returned {tuple(out.shape)} features, expected (2, {num_features})")


def _load(skeleton: nn.Module, resolved: ResolvedWeights, *, classifier: Classifier, name: str,
          input_size: int) -> nn.Module:
    """Fill the meta-device skeleton with the weights' tensors (no wasted random init), checking every key."""
    source = resolved.path or resolved.tag
    sd = resolved.state_dict or {}
    if any(k.startswith("backbone.") for k in sd):  # a headstart fine-tune: Sequential(backbone, head)
        sd = {k.removeprefix("backbone."): v for k, v in sd.items() if k.startswith("backbone.")}
    sd = {k: v for k, v in sd.items() if not classifier.owns(k) and not k.startswith(AUX_PREFIXES)}
    expected = skeleton.state_dict()
    if "encoder.pos_embedding" in sd and sd["encoder.pos_embedding"].shape != expected["encoder.pos_embedding"].shape:
        sd = interpolate_embeddings(image_size=input_size, patch_size=skeleton.patch_size, model_state=sd)
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        raise WeightsError(f"weights {source} do not fit {name}: missing keys {missing[:3]}, unexpected keys "
                           f"{unexpected[:3]} ({len(missing)}/{len(unexpected)} in all); pass weights saved from "
                           f"a torchvision {name}, or --weights random")
    wrong = [k for k in expected if sd[k].shape != expected[k].shape]
    if wrong:
        k = wrong[0]
        raise WeightsError(f"weights {source} do not fit {name}: {k} has shape {tuple(sd[k].shape)}, expected "
                           f"{tuple(expected[k].shape)} ({len(wrong)} tensors differ); pass weights saved from "
                           f"a torchvision {name}")
    skeleton.load_state_dict(sd, strict=True, assign=True)
    if any(t.is_meta for t in skeleton.buffers()):  # a non-persistent buffer the state dict cannot fill
        model, _ = _build(name, input_size=input_size)
        model.load_state_dict(sd, strict=True)
        return model.float()
    return skeleton.float()  # a half-precision file must not make a half-precision backbone


