"""Rebuild the network a run needs, and prove it is the same one.

A cached head is only valid on features computed exactly as its training features were. The backbone is
rebuilt from the head's feature-set spec (provider, weights, preprocessing, layer and pool) and then checked:
the weights file's sha256 (or, for random weights, the seed that drew them and the sha256 of the drawn state),
the preprocessing and the feature dimension must all equal the spec's. It is built by extraction's own
`extract.features` (the set's one layer/pool tap), so predict computes features with extraction's code.
A fine-tune's network is rebuilt from its `checkpoints/best.pt` (loaded with `weights_only=True`, content
digest checked).
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from headstart.backbones.names import DEFAULT_POOL, FINAL_LAYER, parse_backbone
from headstart.backbones.registry import create_model
from headstart.backbones.types import Preprocessing
from headstart.backbones.weights import state_sha256
from headstart.errors import CheckpointError, DataError, WeightsError, one_line
from headstart.extract.features import FeatureModel, build_feature_models
from headstart.finetune.checkpoint import load_checkpoint

log = logging.getLogger(__name__)


def weights_request(spec: dict, override: str | None) -> str:
    """The `--weights` value that rebuilds the spec's weights: `random`, the ImageNet tag, or a local file."""
    tag = str(spec.get("weights") or "")
    if override is not None:
        return override
    if tag == "random":
        return "random"
    if tag.startswith("imagenet"):
        # torchvision takes its tag back (imagenet:<Enum>.<MEMBER>); the other providers have one pretrained file
        return tag if parse_backbone(spec["backbone"]).provider == "torchvision" else "imagenet"
    name = tag.split(":", 1)[-1] or "a local file"
    raise WeightsError(f"the head was trained on features of {spec['backbone']} with weights file {name} (sha256 "
                       f"{str(spec.get('weights_sha256'))[:12]}...); pass --weights PATH to that file")


def rebuild_features(spec: dict, *, weights: str | None = None, where: str = "head.json") -> FeatureModel:
    """The feature set a head was fitted on, rebuilt as extraction builds it and checked against its spec.

    The result is extraction's own `FeatureModel` (`extract.features.build_feature_models`): the backbone of any
    provider with the one (layer, pool) tap of the set, so `compute_features` gives predict the features
    extraction gave the cache. No engine is attached yet (`extract.features.attach_engine`).
    """
    for key in ("backbone", "weights", "preprocessing"):
        if key not in spec:
            raise DataError(f"{where}: the feature set spec lacks {key!r}; expected the attributes of the cache's "
                            "feature set; rerun `headstart heads` with this headstart")
    random_weights = spec.get("weights") == "random"
    seed = spec.get("weights_seed")
    if random_weights and seed is None:
        log.warning("%s: the feature set records no seed for its random weights (a cache from before seeds were "
                    "recorded); rebuilding them with extract's default seed 0, unchecked", where)
    prep = dict(spec["preprocessing"])
    prep.pop("decode", None)
    layer, pool = spec.get("layer") or FINAL_LAYER, spec.get("pool") or DEFAULT_POOL
    # Only the set's own tap: a one-output graph (the default feature needs no hooks, as in extraction).
    [model] = build_feature_models([spec["backbone"]], weights=weights_request(spec, weights),
                                   image_size=int(prep["input_size"]), seed=int(seed or 0),
                                   layers=[] if layer == FINAL_LAYER else [layer],
                                   pools=[] if pool == DEFAULT_POOL else [pool],
                                   crop=str(prep.get("crop", "center")))
    backbone, output = model.backbone, model.outputs[0]
    _check_same(spec, backbone.preprocessing.to_dict(), prep, "preprocessing", where)
    if random_weights:
        if spec.get("random_weights_sha256") and state_sha256(backbone.module) != spec["random_weights_sha256"]:
            raise WeightsError(f"random weights of {spec['backbone']} rebuilt from seed {seed} differ from those the "
                               f"features were extracted with (state sha256 {spec['random_weights_sha256'][:12]}...); "
                               "this torch draws them differently; re-extract and refit with this installation")
    elif backbone.weights_sha256 != spec.get("weights_sha256"):
        raise WeightsError(f"weights {backbone.weights_tag} of {spec['backbone']} have sha256 "
                           f"{backbone.weights_sha256[:12]}...; the head was trained on features of weights with "
                           f"sha256 {str(spec.get('weights_sha256'))[:12]}...; pass --weights PATH to that file")
    if spec.get("dim") is not None and int(spec["dim"]) != output.dim:
        raise DataError(f"{where}: {spec['backbone']} layer {layer} pool {pool} gives {output.dim} features, the "
                        f"head's feature set has {spec['dim']}; the head was fitted on other features")
    return model


def _check_same(spec: dict, rebuilt: dict, stored: dict, what: str, where: str) -> None:
    if _plain(rebuilt) != _plain(stored):
        raise DataError(f"{where}: {spec['backbone']} rebuilt here has {what} {rebuilt}, the head's features were "
                        f"computed with {stored}; this installation builds the backbone differently")


def _plain(value):
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def rebuild_finetuned(run_dir: Path, config: dict, *, n_classes: int) -> tuple[nn.Module, Preprocessing]:
    """The fine-tuned network of a run folder, with its best val epoch's weights, in eval mode on the CPU."""
    path = run_dir / "checkpoints" / "best.pt"
    if not path.is_file():
        raise DataError(f"no checkpoints/best.pt in {run_dir}; expected the fine-tune run folder `headstart "
                        "finetune` wrote (with its checkpoints)")
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as exc:  # its advice is about --resume; here the run's weights are simply unusable
        raise CheckpointError(f"{str(exc).split(';')[0]}; rerun `headstart finetune` to train it again") from None
    stored = checkpoint.get("config") or config
    net, prep, _ = create_model(stored.get("backbone", config.get("backbone")), num_classes=n_classes,
                                weights="random", image_size=stored.get("image_size"), seed=int(stored.get("seed", 0)))
    prep = prep.with_crop(str(stored.get("crop", "center")))  # the plain view it was trained on (--crop)
    try:
        net.load_state_dict(checkpoint["model"])
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{path} does not fit {stored.get('backbone')} with {n_classes} classes "
                              f"({one_line(exc, limit=100)}); rerun `headstart finetune`") from None
    return net.eval().requires_grad_(False), prep
