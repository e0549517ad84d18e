"""Weight resolution: `imagenet`, `random` or a local state-dict file -> tensors, a tag and a sha256.

The tag and sha256 go into the cache fingerprint, so two caches built from different weights never look alike.
`imagenet` uses torchvision's weight enums and the standard torch hub cache (`$TORCH_HOME/hub/checkpoints`), the
same file `torchvision.models.resnet18(weights=...)` would use, but downloads it itself with a short timeout
so an offline machine fails in seconds with one line naming the file, never after a long hang.
Every file is read with `torch.load(..., weights_only=True)` or, for `.safetensors`, with safetensors: a checkpoint
can not run code on load. The download and file-loading helpers here serve every provider.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from urllib.request import Request, urlopen

import torch
from torchvision.models import get_model_weights
from torchvision.models._api import WeightsEnum
from tqdm.auto import tqdm

from headstart.backbones.providers import is_offline, offline_reason
from headstart.errors import ConfigError, DependencyError, WeightsError, one_line
from headstart.io import replace_durably

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 10.0  # per connect and per read, on this request only: an offline machine fails fast
_HASH_BLOCK = 1 << 20  # 1 MiB: streaming keeps a 2.5 GB vit_h_14 file out of memory


@dataclass
class ResolvedWeights:
    """Where a backbone's weights come from; `state_dict` is None for random weights."""

    tag: str  # "imagenet:<Enum>.<MEMBER>", "random" or "file:<basename>"
    sha256: str  # of the weights file; "" for random weights
    state_dict: dict[str, torch.Tensor] | None
    enum: WeightsEnum | None  # torchvision weights whose preprocessing and architecture flags apply
    path: str | None = None  # the file the tensors came from


def default_weights(name: str) -> WeightsEnum | None:
    """torchvision's DEFAULT weights enum member for a model (offline metadata), or None if it has none."""
    try:
        return get_model_weights(name).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return None


def torchvision_gflops(name: str) -> float | None:
    """GFLOPs per image at a torchvision model's default input size, from its weights' offline metadata; None for
    other providers' names and models without the figure. Stamped into feature sets and fine-tune records, so
    the report's cost labels never import torch to look it up."""
    enum = None if ":" in name else default_weights(name)
    value = enum.meta.get("_ops") if enum is not None else None
    return float(value) if isinstance(value, (int, float)) else None


def hub_checkpoint_path(weights: WeightsEnum) -> Path:
    """Where torch hub keeps this weights file; torch.hub.get_dir() reads $TORCH_HOME at each call."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def is_cached(weights: WeightsEnum) -> bool:
    return hub_checkpoint_path(weights).is_file()


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def files_sha256(paths: list[Path]) -> str:
    """One sha256 for a set of files (sharded weights): the file's own hash when there is one file."""
    if len(paths) == 1:
        return file_sha256(paths[0])
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(f"{path.name}:{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def state_sha256(module: torch.nn.Module) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes and bytes, in key order): the identity of
    weights that have no file, such as seeded random ones. Layout (channels_last) and device do not change it."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{key}\t{t.dtype}\t{tuple(t.shape)}\n".encode())
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def rebuild_attrs(backbone, *, seed: int) -> dict:
    """Feature-set attributes that let a later process rebuild this backbone's exact weights.

    A weights file is already identified by its sha256; random weights are identified by the seed that drew
    them and the sha256 of the drawn state, so `predict` can rebuild them and check it got the same network.
    """
    if backbone.weights_tag != "random":
        return {}
    return {"weights_seed": int(seed), "random_weights_sha256": state_sha256(backbone.module)}


def resolve_weights(name: str, spec: str) -> ResolvedWeights:
    """Turn a `--weights` value into tensors and provenance.

    `spec` is `imagenet` (the model's DEFAULT enum), `imagenet:<MEMBER>` (e.g. `imagenet:IMAGENET1K_V1`),
    `random`, or the path of a local state dict.
    """
    if spec == "random":
        return ResolvedWeights(tag="random", sha256="", state_dict=None, enum=default_weights(name))
    if spec == "imagenet" or spec.startswith("imagenet:"):
        enum = _imagenet_enum(name, spec)
        path = _ensure_downloaded(name, enum)
        log.debug("loading %s from %s", enum, path)
        return ResolvedWeights(tag=f"imagenet:{enum}", sha256=file_sha256(path), state_dict=load_state_dict(path),
                               enum=enum, path=str(path))
    path = weights_file(spec)
    return ResolvedWeights(tag=f"file:{path.name}", sha256=file_sha256(path), state_dict=load_state_dict(path),
                           enum=default_weights(name), path=str(path))


def weights_file(spec: str) -> Path:
    """The local file a `--weights PATH` value names; ConfigError when it is none of the accepted values."""
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ConfigError(f"--weights {spec!r} is neither imagenet, random nor an existing file; "
                          "pass imagenet, random or the path of a state dict (.pth or .safetensors)")
    return path


def select_enum(name: str, spec: str) -> WeightsEnum | None:
    """The torchvision enum whose preprocessing applies: the requested ImageNet weights, else DEFAULT's.

    Random and file weights keep DEFAULT's crop size and normalisation: it is offline metadata, and a local
    state dict is most often a fine-tune of those very weights.
    """
    if spec == "imagenet" or spec.startswith("imagenet:"):
        return _imagenet_enum(name, spec)
    return default_weights(name)


def _imagenet_enum(name: str, spec: str) -> WeightsEnum:
    enum = default_weights(name)
    if enum is None:
        raise WeightsError(f"torchvision has no pretrained weights for {name}; pass --weights random "
                           "or --weights PATH for a local state dict")
    if spec == "imagenet":
        return enum
    member = spec.split(":", 1)[1].rsplit(".", 1)[-1]  # accept IMAGENET1K_V1 or ResNet50_Weights.IMAGENET1K_V1
    members = [m.name for m in type(enum)]
    if member not in members:
        raise ConfigError(f"--weights {spec!r}: {name} has no weights {member!r}; "
                          f"expected one of {', '.join('imagenet:' + m for m in members)}")
    return type(enum)[member]


def _ensure_downloaded(name: str, enum: WeightsEnum) -> Path:
    """The hub-cache file for `enum`, downloading it first unless offline; WeightsError when it cannot be had."""
    return ensure_downloaded(enum.url, hub_checkpoint_path(enum), what=f"pretrained weights for {name}")


def ensure_downloaded(url: str, path: Path, *, what: str) -> Path:
    """`path`, downloading `url` there first unless offline; WeightsError naming the file when it cannot be had."""
    if path.is_file():
        return path
    if is_offline():
        reason = offline_reason()
    else:
        reason = _download(url, path)
        if reason is None:
            return path
    raise WeightsError(f"{what} are not in {path} and could not be downloaded ({reason}); "
                       "put the file there, pass --weights PATH for a local state dict, or --weights random")


def _download(url: str, path: Path) -> str | None:
    """Download into the hub cache; returns None on success, else the reason it failed.

    Hand-written rather than `torch.hub.download_url_to_file` because that takes no timeout, and the only way to
    give it one, `socket.setdefaulttimeout`, changes every socket the process opens meanwhile. Here the timeout
    belongs to this one request. As torch.hub does, the sha256 prefix in the file name is checked before the
    file is renamed into place, so a broken download never lands in the cache.
    """
    match = torch.hub.HASH_REGEX.search(os.path.basename(url))
    prefix = match.group(1) if match else None
    tmp = path.with_name(f".{path.name}.part-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s to %s", url, path)
        digest = hashlib.sha256()
        request = Request(url, headers={"User-Agent": "torch.hub"})
        with urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response, open(tmp, "wb") as out:
            size = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=path.name, disable=None) as bar:
                while block := response.read(_HASH_BLOCK):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
        if prefix is not None and not digest.hexdigest().startswith(prefix):
            return f"the downloaded file's sha256 {digest.hexdigest()[:16]}... does not start with {prefix}"
        replace_durably(tmp, path)
        return None
    except Exception as exc:  # noqa: BLE001 - any network/disk failure becomes one readable reason
        return f"{type(exc).__name__}: {one_line(exc)}"
    finally:
        tmp.unlink(missing_ok=True)


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict (or a `{"model"|"state_dict": ...}` checkpoint) with weights_only=True, or a `.safetensors`
    file; strip DDP prefixes."""
    if str(path).endswith(".safetensors"):
        return _load_safetensors(path)
    advice = "only plain state dicts saved with torch.save(model.state_dict(), PATH) are accepted"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise WeightsError(f"weights file {path} holds Python objects that loading with weights_only=True refuses "
                           f"(they could run code); {advice}") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt file can fail anywhere in the unpickler
        reason = f"{type(exc).__name__}: {one_line(exc)}"
        raise WeightsError(f"cannot read weights file {path} ({reason}); {advice}") from None
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"weights file {path} holds a {type(obj).__name__}, not a state dict of tensors; save one "
                           "with torch.save(model.state_dict(), PATH) or a checkpoint dict with a 'model' entry")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _load_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise DependencyError(f"reading {path} needs safetensors, which is not installed: pip install safetensors "
                              "(or pip install 'headstart[hf]')") from None
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: one readable reason
        raise WeightsError(f"cannot read safetensors file {path} ({type(exc).__name__}: {one_line(exc)}); "
                           "pass a file written by safetensors.torch.save_file") from None
    if not state:
        raise WeightsError(f"safetensors file {path} holds no tensors; pass the model's weights file")
    return {k.removeprefix("module."): v for k, v in state.items()}
