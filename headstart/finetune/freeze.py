"""Freeze modes and optimiser parameter groups.

A frozen part is frozen *completely*: its parameters get no gradient, and its modules stay in eval mode during
training, so BatchNorm uses and keeps its running statistics and dropout is off. The tutorial's "fixed feature
extractor" only does the first half; with BatchNorm left in train mode its features drift every batch.
Since no frozen parameter requires grad and inputs do not either, autograd records nothing for a frozen
prefix, so `backbone` mode also saves the activation memory of the backbone.
"""

from __future__ import annotations

from torch import nn

from headstart.backbones.registry import split_parameters
from headstart.finetune.config import FinetuneConfig

# Which parameter groups of `split_parameters` train in each freeze mode.
TRAINABLE_GROUPS = {"none": ("head", "last_stage", "rest"), "partial": ("head", "last_stage"), "backbone": ("head",)}


def apply_freeze(model: nn.Module, *, name: str, mode: str) -> list[nn.Module]:
    """Set `requires_grad` per freeze mode; return the maximal fully frozen submodules (to keep in eval)."""
    groups = split_parameters(model, name)
    for group, params in groups.items():
        for p in params:
            p.requires_grad_(group in TRAINABLE_GROUPS[mode])
    return frozen_modules(model)


def frozen_modules(model: nn.Module) -> list[nn.Module]:
    """Outermost submodules that hold parameters, none of them trainable (pre-order walk, parents first)."""
    frozen: list[tuple[str, nn.Module]] = []
    for qualname, module in model.named_modules():
        if any(qualname.startswith(prefix + ".") for prefix, _ in frozen if prefix):
            continue
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            frozen.append((qualname, module))
            if qualname == "":
                break  # the whole model is frozen (never the case in practice: the head trains)
    return [m for _, m in frozen]


def set_train_mode(model: nn.Module, frozen: list[nn.Module]) -> None:
    """`model.train()` for the trainable parts, eval for the frozen ones (BatchNorm statistics stay fixed)."""
    model.train()
    for module in frozen:
        module.eval()


def param_groups(model: nn.Module, *, name: str, config: FinetuneConfig) -> list[dict]:
    """AdamW groups: the head at `lr`, pretrained layers at `lr * backbone_lr_mult`; no decay on 1-D tensors
    (biases, norm scales), where decay only shrinks the normalisation toward zero."""
    groups = split_parameters(model, name)
    out = []
    for group, params in groups.items():
        lr = config.lr if group == "head" else config.lr * config.backbone_lr_mult
        trainable = [p for p in params if p.requires_grad]
        for decay, selected in ((config.weight_decay, [p for p in trainable if p.ndim > 1]),
                                (0.0, [p for p in trainable if p.ndim <= 1])):
            if selected:
                out.append({"params": selected, "lr": lr, "weight_decay": decay, "name": f"{group}"})
    return out
