"""The torchxrayvision provider (`-b xrv:NAME`): chest-X-ray-pretrained DenseNet121 (224 px) and ResNet50 (512 px).

A name is torchxrayvision's weights name (`densenet121-res224-all`, `resnet50-res512-all`...): the architecture,
its input size and its pretrained weights in one. The feature is torchxrayvision's `features2`: relu of the last
DenseNet map (the ResNet's layer4 map), average-pooled (1024 / 2048 dims).

Preprocessing: one grayscale channel, pixel values mapped linearly to [-1024, 1024] (`xrv.datasets.normalize`),
a center crop to a square and a resize to the model's size. The models are rebuilt here rather than called,
because torchxrayvision's forward silently resamples any other input size (`fix_resolution`): a different
`--image-size` is refused instead. Its weights files are whole pickled modules; they are read with
`weights_only=True` and an allow-list of layer classes, so a file that would run code is refused.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
import torchxrayvision as xrv
from torch import nn

from headstart.backbones.names import BackboneName
from headstart.backbones.providers import package_version
from headstart.backbones.providers.base import close_names_error, load_strict, meta_stats, seeded, strip_prefixes
from headstart.backbones.types import Backbone, Preprocessing, TapPoint
from headstart.backbones.weights import ensure_downloaded, file_sha256, load_state_dict, weights_file
from headstart.errors import ConfigError, WeightsError, one_line

log = logging.getLogger(__name__)

PROVIDER = "xrv"
XRV_RANGE = 1024.0  # xrv.datasets.normalize maps [0, maxval] linearly onto [-1024, 1024]


class XrvFeatures(nn.Module):
    """`forward(x) -> (B, D)`: torchxrayvision's features2 without its silent resize; `final` marks the map."""

    def __init__(self, model: nn.Module, trunk: str):
        super().__init__()
        self.model = model
        self.trunk = trunk  # "densenet": model.features, then relu; "resnet": torchvision resnet up to layer4
        self.final = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.trunk == "densenet":
            x = F.relu(self.model.features(x))
        else:
            m = self.model
            x = m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x))))))))
        return F.adaptive_avg_pool2d(self.final(x), 1).flatten(1)


def list_names(pattern: str | None = None) -> list[str]:
    names = sorted(n for n in xrv.models.model_urls if n.startswith(("densenet", "resnet")))
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)] if pattern else names


def recommended() -> list[str]:
    return list_names()


def check_name(parsed: BackboneName) -> None:
    if parsed.model not in list_names():
        raise close_names_error(parsed.model, list_names(), full=parsed.full, prefix="xrv:",
                                hint=f"torchxrayvision names are {', '.join(list_names())}")


def input_size(parsed: BackboneName) -> int:
    return int(xrv.models.model_urls[parsed.model].get("input_resolution", 224))


def preprocessing(size: int) -> Preprocessing:
    """(pixel / 255 - 0.5) / (1 / 2048) = xrv's [-1024, 1024]; the crop is the whole centered square."""
    return Preprocessing(input_size=size, resize_size=size, mean=(0.5,), std=(0.5 / XRV_RANGE,),
                         interpolation="bilinear", channels=1)


def create(parsed: BackboneName, *, weights: str = "imagenet", image_size: int | None = None, seed: int = 0,
           trust_remote_code: bool = False) -> Backbone:
    check_name(parsed)
    size = input_size(parsed)
    if image_size is not None and image_size != size:
        raise ConfigError(f"{parsed.full} takes only {size}x{size} inputs (its weights were trained at {size} px); "
                          f"pass --image-size {size} or leave it out")
    if weights == "random":
        tag, sha, state, source = "random", "", None, None
    elif weights == "imagenet":
        source = _pretrained_file(parsed)
        tag, sha, state = f"imagenet:{parsed.model}", file_sha256(source), _load_xrv_file(source)
    else:
        source = weights_file(weights)
        tag, sha, state = f"file:{source.name}", file_sha256(source), load_state_dict(source)
    module = seeded(seed, lambda: _build(parsed))
    if state is not None:
        _load(module, strip_prefixes(state, ("backbone.", "model.")), source=source, name=parsed.full)
    module.eval().requires_grad_(False)
    dim = 1024 if module.trunk == "densenet" else 2048
    parts = {"provider": PROVIDER, "provider_version": package_version(PROVIDER), "model": parsed.model,
             "pretrained_tag": parsed.model if weights == "imagenet" else None}
    return Backbone(name=parsed.full, module=module, num_features=dim, preprocessing=preprocessing(size),
                    weights_tag=tag, weights_sha256=sha, provider=PROVIDER, fingerprint_parts=parts,
                    final_tap=TapPoint("final", "output", "NCHW"), layer_root="model")


def last_stage(backbone: nn.Module, parsed: BackboneName) -> list[nn.Module]:
    model = backbone.model
    if backbone.trunk == "densenet":
        return [model.features.denseblock4, model.features.norm5]
    return [model.layer4]


def describe(parsed: BackboneName) -> dict:
    check_name(parsed)
    size = input_size(parsed)
    dim, params, gflops = _arch_stats(parsed.model.split("-")[0], size)
    file = _cache_path(parsed)
    return {
        "name": parsed.full, "provider": PROVIDER, "num_features": dim, "params_m": params, "gflops": gflops,
        "top1": None, "input_size": size, "fixed_input_size": True, "default_weights": f"imagenet:{parsed.model}",
        "weights": [f"imagenet:{parsed.model}"], "cached": file.is_file(), "file": str(file),
    }


@functools.lru_cache(maxsize=None)
def _arch_stats(arch: str, size: int) -> tuple:
    """One meta build per architecture: the seven DenseNet121 weights share one."""
    return meta_stats(lambda: _build(BackboneName(PROVIDER, f"{arch}-res{size}"), meta=True), preprocessing(size))


def _build(parsed: BackboneName, *, meta: bool = False) -> XrvFeatures:
    """The architecture alone: no download, no classifier (unused parameters would upset DDP)."""
    device = torch.device("meta") if meta else torch.device("cpu")
    with device:
        if parsed.model.startswith("densenet"):
            model = xrv.models.DenseNet(weights=None, **xrv.models.get_densenet_params(parsed.model.split("-")[0]))
            model.classifier = nn.Identity()
            model.op_threshs = None
            return XrvFeatures(model, "densenet")
        model = torchvision.models.resnet50(weights=None)
        model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)  # xrv's 1-channel stem
        model.fc = nn.Identity()
        return XrvFeatures(model, "resnet")


def _cache_path(parsed: BackboneName) -> Path:
    url = xrv.models.model_urls[parsed.model]["weights_url"]
    return Path(xrv.utils.get_cache_dir()).expanduser() / url.rsplit("/", 1)[-1]


def _pretrained_file(parsed: BackboneName) -> Path:
    url = xrv.models.model_urls[parsed.model]["weights_url"]
    return ensure_downloaded(url, _cache_path(parsed), what=f"torchxrayvision weights for {parsed.full}")


def _safe_classes() -> list:
    """Every class a torchxrayvision weights file may rebuild: its own modules and plain torch layers."""
    layers = [getattr(nn, n) for n in ("Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "AvgPool2d", "Linear",
                                       "Sequential", "AdaptiveAvgPool2d", "Dropout", "Identity")]
    densenet = [xrv.models.DenseNet, xrv.models._DenseBlock, xrv.models._DenseLayer, xrv.models._Transition]
    resnet = [torchvision.models.ResNet, torchvision.models.resnet.Bottleneck, torchvision.models.resnet.BasicBlock]
    return layers + densenet + resnet + [set]


def _load_xrv_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from an xrv file: a plain state dict, or a pickled module rebuilt only from allowed classes."""
    try:
        with torch.serialization.safe_globals(_safe_classes()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a class outside the allow-list, or a damaged file
        raise WeightsError(f"torchxrayvision weights {path} cannot be read safely ({one_line(exc, limit=120)}); "
                           "delete the file to download it again, or pass --weights random or --weights PATH") from None
    state = obj.state_dict() if isinstance(obj, nn.Module) else obj
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"torchxrayvision weights {path} hold a {type(obj).__name__}, not a model or state dict; "
                           "delete the file to download it again")
    return state


def _load(module: XrvFeatures, state: dict[str, torch.Tensor], *, source, name: str) -> None:
    """Strict load into the architecture; the classifier and op_threshs of a pretrained file are not features."""
    state = {k: v for k, v in state.items() if not k.startswith(("classifier.", "fc.")) and k != "op_threshs"}
    load_strict(module.model, state, source=source, name=name,
                advice=f"pass weights saved from a torchxrayvision {name.removeprefix('xrv:')}")
