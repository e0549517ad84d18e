"""Turning a torchvision classifier into a pooled-feature extractor, and naming its last stage.

One generic rule covers every torchvision classification model: the classifier lives in `fc`, `classifier`,
`heads` or `head`, and its *last* `nn.Linear` is the ImageNet layer. That layer becomes `nn.Identity()`, so the
model returns what fed it, and `num_features` is its `in_features`. Where the classifier holds several Linears
(vgg, alexnet: fc6/fc7 -> 4096; mobilenet_v3: 1280; maxvit: 512 after tanh) the penultimate representation is
kept, the common "fc7 features" choice. squeezenet's classifier is a 1x1 conv: it becomes a global average pool
over the 512 feature channels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from headstart.errors import ConfigError

CLASSIFIER_ATTRS = ("fc", "classifier", "heads", "head")  # where torchvision models keep the classifier
AUX_PREFIXES = ("AuxLogits.", "aux1.", "aux2.")  # inception/googlenet auxiliary heads: dropped, never used

# Family -> modules of the backbone's last stage (relative paths; negative ints index from the end). Used by
# `--freeze partial`: these train with the head, the rest stays frozen. Leftover classifier layers (vgg fc6/fc7,
# convnext's LayerNorm, mobilenet_v3's 960->1280 Linear) are added automatically: they sit nearest the head.
_LAST_STAGE: list[tuple[str, tuple[str, ...]]] = [
    (r"resnet|resnext|wide_resnet", ("layer4",)),
    (r"densenet", ("features.denseblock4", "features.norm5")),
    (r"efficientnet|mobilenet", ("features.-2", "features.-1")),
    (r"mnasnet", ("layers.-4", "layers.-3", "layers.-2")),
    (r"convnext", ("features.-1",)),
    (r"swin", ("features.-1", "norm")),
    (r"vit_", ("encoder.layers.-1", "encoder.ln")),
    (r"maxvit", ("blocks.-1",)),
    (r"regnet", ("trunk_output.-1",)),
    (r"shufflenet", ("stage4", "conv5")),
    (r"squeezenet", ("features.-1",)),
    (r"googlenet", ("inception5a", "inception5b")),
    (r"inception", ("Mixed_7b", "Mixed_7c")),
    (r"vgg|alexnet", ()),  # their last stage is the leftover fc6/fc7 classifier
]


@dataclass(frozen=True)
class Classifier:
    """Where the removed ImageNet layer was: its path and the width of what fed it."""

    attr: str  # top-level attribute holding the classifier, e.g. "classifier"
    path: str  # dotted path of the replaced module, e.g. "classifier.6"
    num_features: int

    def owns(self, key: str) -> bool:
        """True for state-dict keys of the removed layer (ignored on load, whatever their shape)."""
        return key.startswith(self.path + ".")


def strip_classifier(model: nn.Module) -> Classifier:
    """Replace the final ImageNet layer by Identity (in place), so `model(x)` returns (B, num_features)."""
    for attr in CLASSIFIER_ATTRS:
        container = getattr(model, attr, None)
        if not isinstance(container, nn.Module):
            continue
        linears = [(n, m) for n, m in container.named_modules() if isinstance(m, nn.Linear)]
        if linears:
            sub, layer = linears[-1]
            path = f"{attr}.{sub}" if sub else attr
            model.set_submodule(path, nn.Identity())
            return Classifier(attr=attr, path=path, num_features=layer.in_features)
        convs = [m for m in container.modules() if isinstance(m, nn.Conv2d)]
        if convs:  # squeezenet: features -> classifier(dropout, conv1x1, relu, pool) -> flatten in forward()
            setattr(model, attr, nn.AdaptiveAvgPool2d((1, 1)))
            return Classifier(attr=attr, path=attr, num_features=convs[-1].in_channels)
    # Not a user error: every torchvision classifier has one of these layouts (tests check all of them).
    raise TypeError(f"{type(model).__name__} has no Linear or Conv2d classifier in {'/'.join(CLASSIFIER_ATTRS)}; "
                       "headstart cannot turn it into a feature extractor")


def last_stage_modules(backbone: nn.Module, name: str) -> list[nn.Module]:
    """The modules nearest the head of a stripped backbone: the family's last stage plus the classifier's rest."""
    paths = next((paths for pattern, paths in _LAST_STAGE if re.match(pattern, name)), None)
    if paths is None:
        raise ConfigError(f"no last-stage rule for backbone {name}; use --freeze none or --freeze backbone")
    modules = [_resolve(backbone, p) for p in paths]
    leftover = next(getattr(backbone, a) for a in CLASSIFIER_ATTRS if isinstance(getattr(backbone, a, None), nn.Module))
    if any(True for _ in leftover.parameters()):
        modules.append(leftover)
    return modules


def _resolve(module: nn.Module, path: str) -> nn.Module:
    for part in path.split("."):
        module = module[int(part)] if part.lstrip("-").isdigit() else getattr(module, part)  # type: ignore[index]
    return module
