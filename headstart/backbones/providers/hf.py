"""The Hugging Face provider (`-b hf:ORG/NAME`): a `transformers` AutoModel vision encoder, e.g. RAD-DINO.

Everything is read from a local snapshot of the repository in the hub cache (downloaded first unless offline):
`config.json` builds the architecture, `preprocessor_config.json` gives the preprocessing (size, crop, mean, std,
resample), and the weights are read from safetensors where the repository has them. The feature is the model's
pooled output, or the class token where it has none. Code from a model repository never runs: a model whose
config needs it (`auto_map` with a `model_type` transformers does not know) is refused unless the caller passes
`trust_remote_code=True`, which the fingerprint records. transformers itself is imported only when a model is
read or built, so listing uncached names does not pay for it.
"""

from __future__ import annotations

import fnmatch
import inspect
import json
import logging
from pathlib import Path

import torch
from torch import nn

from headstart.backbones import hubcache
from headstart.backbones.names import BackboneName
from headstart.backbones.providers import package_version
from headstart.backbones.providers.base import (load_strict, meta_probe, meta_stats, seeded, shape_forward,
                                               strip_prefixes)
from headstart.backbones.types import Backbone, Preprocessing, TapPoint
from headstart.backbones.weights import file_sha256, files_sha256, load_state_dict, weights_file
from headstart.errors import ConfigError, DependencyError, WeightsError, one_line

log = logging.getLogger(__name__)

PROVIDER = "hf"
RECOMMENDED = ("microsoft/rad-dino", "facebook/dinov2-small", "facebook/dinov2-base",
               "google/vit-base-patch16-224-in21k")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # transformers' defaults
_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "bilinear", 5: "bilinear"}  # PIL codes
_INTERPOLATING_TYPES = ("dinov2", "dinov2_with_registers")  # always interpolate their position embeddings


class HFFeatures(nn.Module):
    """`forward(x) -> (B, D)`: pooled output, else the class token (or the map mean); `final` marks the last map."""

    def __init__(self, model: nn.Module, *, interpolate: bool):
        super().__init__()
        self.model = model
        self.interpolate = interpolate  # pass interpolate_pos_encoding=True (ViT at a size it was not built for)
        self.final = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kwargs = {"interpolate_pos_encoding": True} if self.interpolate else {}
        out = self.model(pixel_values=x, **kwargs)
        hidden = self.final(out.last_hidden_state)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            pooled = hidden[:, 0] if hidden.ndim == 3 else hidden.mean((2, 3))
        return pooled.flatten(1)


def list_names(pattern: str | None = None) -> list[str]:
    """The recommended encoders plus every model already in the hub cache (nothing is looked up online)."""
    names = sorted(set(RECOMMENDED) | set(hubcache.cached_repos()))
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)] if pattern else names


def recommended() -> list[str]:
    return list(RECOMMENDED)


def check_name(parsed: BackboneName) -> None:
    """Only the ORG/NAME form can be checked offline (names.parse_backbone did); the hub says the rest."""


def needs_remote_code(config: dict, known_types) -> bool:
    """True when transformers could build this config only by running code from the repository."""
    return bool(config.get("auto_map")) and config.get("model_type") not in known_types


def preprocessing_from_processor_config(proc: dict, *, channels: int = 3, default_size: int = 224,
                                        image_size: int | None = None) -> Preprocessing:
    """An image processor's config (preprocessor_config.json) as headstart data.

    `size` {shortest_edge} + `crop_size` (DINOv2, RAD-DINO) is resize-then-crop; `size` {height, width} with no
    crop (ViT) becomes a resize of the shorter side and a center crop of that size, which keeps the aspect ratio
    where the processor would squash it (chest X-rays are near-square).
    """
    size = proc.get("size", default_size)
    if isinstance(size, dict):
        size = size.get("shortest_edge") or min(size.get("height", default_size), size.get("width", default_size))
    crop = proc.get("crop_size") if proc.get("do_center_crop", "crop_size" in proc) else None
    crop = min(crop.get("height", size), crop.get("width", size)) if isinstance(crop, dict) else (crop or size)
    if not proc.get("do_resize", True):
        size = crop
    normalize = proc.get("do_normalize", True)
    mean = tuple(proc.get("image_mean", IMAGENET_MEAN)) if normalize else (0.0,) * channels
    std = tuple(proc.get("image_std", IMAGENET_STD)) if normalize else (1.0,) * channels
    if channels == 1 and len(mean) == 3:
        mean, std = mean[:1], std[:1]
    prep = Preprocessing(input_size=int(crop), resize_size=int(max(size, crop)), mean=mean, std=std,
                         interpolation=_RESAMPLE.get(proc.get("resample", 2), "bilinear"), channels=channels)
    return prep.for_size(image_size)


def create(parsed: BackboneName, *, weights: str = "imagenet", image_size: int | None = None, seed: int = 0,
           trust_remote_code: bool = False) -> Backbone:
    patterns = ("*.json", "*.safetensors") if weights == "imagenet" else ("*.json",)
    folder = hubcache.snapshot(parsed.model, patterns=patterns, what=f"the Hugging Face model {parsed.full}")
    config = _config(folder, parsed, trust_remote_code=trust_remote_code)
    prep = _preprocessing(folder, config, image_size)
    skeleton = _build(config, trust_remote_code, interpolate=False, meta=True)
    interpolate = _check_size(config, parsed, prep.input_size, skeleton.model)
    skeleton.interpolate = interpolate
    meta_probe(lambda: skeleton, prep, name=parsed.full)
    if weights == "imagenet":
        files = _weight_files(folder, parsed)
        tag, sha = f"imagenet:{parsed.model}@{folder.name[:12]}", files_sha256(files)
        module = HFFeatures(_pretrained(folder, trust_remote_code), interpolate=interpolate)
    else:
        module = seeded(seed, lambda: _build(config, trust_remote_code, interpolate))
        tag, sha = "random", ""
    if weights not in ("random", "imagenet"):
        path = weights_file(weights)
        tag, sha = f"file:{path.name}", file_sha256(path)
        prefixes = ("backbone.", "model.", f"{module.model.base_model_prefix}.")
        load_strict(module.model, strip_prefixes(load_state_dict(path), prefixes), source=path, name=parsed.full,
                    advice="pass weights saved from this model (save_pretrained writes model.safetensors)")
    module.eval().requires_grad_(False).float()
    dim = int(shape_forward(module, prep).shape[1])
    prefix = _prefix_tokens(module.model, config)
    parts = {"provider": PROVIDER, "provider_version": package_version(PROVIDER), "model": parsed.model,
             "revision": folder.name, "model_type": config.model_type, "trust_remote_code": trust_remote_code,
             "pretrained_tag": folder.name if weights == "imagenet" else None}
    return Backbone(name=parsed.full, module=module, num_features=dim, preprocessing=prep, weights_tag=tag,
                    weights_sha256=sha, provider=PROVIDER, fingerprint_parts=parts,
                    final_tap=TapPoint("final", "output", "?", prefix_tokens=prefix), layer_root="model",
                    prefix_tokens=prefix)


def last_stage(backbone: nn.Module, parsed: BackboneName) -> list[nn.Module]:
    """The encoder's last block, and whatever the model runs after its encoder (final norm, pooler)."""
    model = backbone.model
    blocks = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m)]
    if not blocks:
        raise ConfigError(f"{parsed.full} has no block list to name a last stage; use --freeze none or backbone")
    children = [name for name, _ in model.named_children()]
    after = children[children.index("encoder") + 1:] if "encoder" in children else []
    return [blocks[-1][-1]] + [getattr(model, name) for name in after]


def describe(parsed: BackboneName) -> dict:
    config_file = hubcache.cached_file(parsed.model, "config.json")
    dim = params = gflops = None
    size = None
    if config_file is not None:
        try:
            config = _config(config_file.parent, parsed, trust_remote_code=False)
            prep = _preprocessing(config_file.parent, config, None)
            size = prep.input_size
            dim, params, gflops = meta_stats(lambda: _build(config, False, False, meta=True), prep)
        except Exception as exc:  # noqa: BLE001 - a listing shows `-` for a model it cannot read
            log.debug("%s: %s", parsed.full, one_line(exc))
    cached = config_file is not None and _weight_files(config_file.parent, parsed, required=False) != []
    return {"name": parsed.full, "provider": PROVIDER, "num_features": dim, "params_m": params, "gflops": gflops,
            "top1": None, "input_size": size, "default_weights": f"imagenet:{parsed.model}",
            "weights": [f"imagenet:{parsed.model}"], "cached": cached,
            "file": str(config_file.parent) if config_file else None}


def _config(folder: Path, parsed: BackboneName, *, trust_remote_code: bool):
    import transformers
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    raw = json.loads((folder / "config.json").read_text())
    if needs_remote_code(raw, CONFIG_MAPPING_NAMES) and not trust_remote_code:
        raise ConfigError(f"{parsed.full} needs code from its repository to run (model_type "
                          f"{raw.get('model_type')!r}, auto_map); headstart never runs it unless you pass "
                          "--trust-remote-code")
    if raw.get("model_type") not in CONFIG_MAPPING_NAMES and not trust_remote_code:
        raise DependencyError(f"transformers {transformers.__version__} does not know model_type "
                              f"{raw.get('model_type')!r} of {parsed.full}; upgrade it: pip install -U transformers")
    return AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code, local_files_only=True)


def _preprocessing(folder: Path, config, image_size: int | None) -> Preprocessing:
    native = config.image_size if isinstance(getattr(config, "image_size", None), int) else 224
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        log.warning("%s has no preprocessor_config.json; using %d px and ImageNet mean/std", folder, native)
    proc = json.loads(path.read_text()) if path.is_file() else {}
    return preprocessing_from_processor_config(proc, channels=getattr(config, "num_channels", 3),
                                               default_size=native, image_size=image_size)


def _check_size(config, parsed: BackboneName, size: int, model: nn.Module) -> bool:
    """Whether the wrapper must ask for position interpolation; ConfigError for a size the model cannot take."""
    native = getattr(config, "image_size", None)
    patch = getattr(config, "patch_size", None)
    if not isinstance(native, int) or size == native:
        return False
    if isinstance(patch, int) and size % patch:
        raise ConfigError(f"{parsed.full} cuts images into {patch}-px patches; --image-size {size} is not a "
                          f"multiple of {patch} (try {max(patch, size // patch * patch)})")
    if config.model_type in _INTERPOLATING_TYPES:
        return False
    if "interpolate_pos_encoding" in inspect.signature(model.forward).parameters:
        return True
    raise ConfigError(f"{parsed.full} takes only {native}x{native} inputs (no position interpolation); "
                      f"pass --image-size {native} or leave it out")


def _build(config, trust_remote_code: bool, interpolate: bool = False, *, meta: bool = False) -> HFFeatures:
    from transformers import AutoModel

    with torch.device("meta" if meta else "cpu"):
        model = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    return HFFeatures(model, interpolate=interpolate)


def _weight_files(folder: Path, parsed: BackboneName, *, required: bool = True) -> list[Path]:
    """The snapshot's weights, safetensors first; sharded files all count."""
    for pattern in ("model.safetensors", "model-*-of-*.safetensors", "pytorch_model.bin", "pytorch_model-*.bin"):
        files = sorted(folder.glob(pattern))
        if files:
            return files
    if required:
        raise WeightsError(f"the hub cache snapshot {folder} of {parsed.full} holds no weights file "
                           f"(model.safetensors or pytorch_model.bin); {hubcache.ALTERNATIVES}")
    return []


def _pretrained(folder: Path, trust_remote_code: bool) -> nn.Module:
    from transformers import AutoModel

    safetensors = any(folder.glob("*.safetensors"))
    return AutoModel.from_pretrained(folder, local_files_only=True, trust_remote_code=trust_remote_code,
                                     use_safetensors=safetensors)


def _prefix_tokens(model: nn.Module, config) -> int:
    cls = 1 if getattr(getattr(model, "embeddings", None), "cls_token", None) is not None else 0
    return cls + int(getattr(config, "num_register_tokens", 0) or 0)
