"""Feature taps: several pooled features, from several layers, out of ONE forward pass of a backbone.

`build_extractor(backbone, layers=[...], pools=[...])` returns a module whose forward runs the backbone once and
returns `{set_name: (B, D) tensor}` for every (layer, pool) pair. Intermediate layers are read by forward hooks
that pool at once (so no feature map outlives its layer, and a later in-place op cannot change it); the final
map is read at the provider's `final_tap`. Pools:
    default   the provider's own pooled feature at the final layer; at an intermediate layer, the class token
              where there is one, else the mean
    mean      spatial mean of a CNN map, or the mean of the patch tokens (class/register tokens left out)
    gem       generalized mean (p=3) of a CNN map; refused on tokens, which are signed
    cls       the class token (ViTs only)
    cls+mean  class token and patch-token mean, concatenated (dinov2's linear evaluation), 2 x D
Intermediate token outputs are the blocks' raw outputs, before the model's final norm.
"""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from headstart.backbones.names import DEFAULT_POOL, FINAL_LAYER, check_layer, check_pool, feature_set_name
from headstart.backbones.providers.base import shape_forward
from headstart.backbones.types import Backbone, TapPoint
from headstart.errors import ConfigError

GEM_P = 3.0  # the usual GeM exponent (Radenovic et al.): between mean (1) and max (inf)
GEM_EPS = 1e-6  # clamp before the power: GeM is defined on non-negative activations
_TOKEN_POOLS = ("cls", "cls+mean")


@dataclass(frozen=True)
class TapOutput:
    """One feature set the extractor produces."""

    name: str  # the cache's set name (names.feature_set_name)
    layer: str  # "final" or a module path relative to the backbone's layer root
    pool: str
    dim: int
    fingerprint_parts: dict = field(default_factory=dict)  # hash these with the backbone's fingerprint fields
    attrs: dict = field(default_factory=dict)  # /features/<name> attributes: backbone, provider, layer, pool...


def pool_features(x: torch.Tensor, pool: str, *, layout: str, prefix_tokens: int = 0,
                  relu: bool = False) -> torch.Tensor:
    """(B, ...) feature map or tokens -> (B, D) float32, by one of the pools (layout already validated)."""
    x = x.float()
    if relu:
        x = F.relu(x)
    if layout == "NC":
        return x
    if layout == "NHWC":
        x = x.permute(0, 3, 1, 2)
    if layout in ("NCHW", "NHWC"):
        if pool == "gem":
            return x.clamp(min=GEM_EPS).pow(GEM_P).mean((2, 3)).pow(1.0 / GEM_P)
        return x.mean((2, 3))
    patches = x[:, prefix_tokens:].mean(1)
    if pool == "cls" or (pool == DEFAULT_POOL and prefix_tokens):
        return x[:, 0]
    if pool == "cls+mean":
        return torch.cat([x[:, 0], patches], dim=1)
    return patches


def pool_problem(pool: str, *, layout: str, prefix_tokens: int) -> str | None:
    """Why `pool` cannot read a tensor of this layout (None when it can): the one rule for invalid combos."""
    if layout == "NC":
        return None if pool == DEFAULT_POOL else "is already pooled (B, D); only the default pool applies"
    if layout in ("NCHW", "NHWC"):
        return f"is a CNN feature map with no class token; use default, mean or gem" if pool in _TOKEN_POOLS else None
    if pool == "gem":
        return "holds signed transformer tokens; gem pools non-negative CNN maps; use mean, cls or cls+mean"
    if pool in _TOKEN_POOLS and prefix_tokens < 1:
        return "has no class token; use mean"
    return None


class FeatureTaps(nn.Module):
    """`forward(x) -> {set_name: (B, D)}` for every planned output, from one forward pass of `backbone.module`."""

    def __init__(self, backbone: Backbone, plan: list[tuple[str, str, TapPoint | None]]):
        super().__init__()
        self.backbone = backbone.module
        self._plan = plan  # (layer, pool, tap point; None = the module's own pooled output)
        self._names = [feature_set_name(backbone.name, layer=layer, pool=pool) for layer, pool, _ in plan]
        self._points = list(dict.fromkeys(point for _, _, point in plan if point is not None))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        found: dict[str, torch.Tensor] = {}
        handles = [self._hook(point, found) for point in self._points]
        try:
            pooled = self.backbone(x)
        finally:
            for handle in handles:
                handle.remove()
        for name, (_, _, point) in zip(self._names, self._plan):
            if point is None:
                found[name] = pooled
        missing = [n for n in self._names if n not in found]
        if missing:  # a module that exists but does not run in forward (an auxiliary head)
            raise ConfigError(f"feature set {missing[0]} was not computed: its layer does not run in the "
                              "backbone's forward pass; pick another --layer")
        return {name: found[name] for name in self._names}

    def _hook(self, point: TapPoint, found: dict[str, torch.Tensor]):
        wanted = [(name, pool) for name, (_, pool, p) in zip(self._names, self._plan) if p == point]

        def record(tensor) -> None:
            tensor = _first_tensor(tensor)
            for name, pool in wanted:
                found[name] = pool_features(tensor, pool, layout=point.layout, prefix_tokens=point.prefix_tokens,
                                            relu=point.relu)

        module = self.backbone.get_submodule(point.path)
        if point.hook == "input":
            return module.register_forward_pre_hook(lambda _m, args: record(args[0]))
        return module.register_forward_hook(lambda _m, _args, out: record(out))


def build_extractor(backbone: Backbone, *, layers: list[str] | tuple[str, ...] = (),
                    pools: list[str] | tuple[str, ...] = ()) -> tuple[FeatureTaps, list[TapOutput]]:
    """The one-pass multi-output extractor for every (layer, pool) pair, and what each output is.

    `layers` defaults to ["final"] and `pools` to ["default"]; with neither, the single output is the
    backbone's own feature under the backbone's plain name. Invalid names and combinations raise ConfigError.
    Dims are found by one forward pass on the meta device (no compute).
    """
    layers = list(layers) or [FINAL_LAYER]
    pools = list(pools) or [DEFAULT_POOL]
    for values, what in ((layers, "--layer"), (pools, "--pool")):
        if len(set(values)) != len(values):
            raise ConfigError(f"{what} values repeat in {values}; give each once")
    for pool in pools:
        check_pool(pool)
    plan = [(layer, pool, _tap_point(backbone, layer, pool)) for layer, pool in itertools.product(layers, pools)]
    hooked = any(point is not None for _, _, point in plan)  # else: the backbone's own feature, dim known
    shapes = _probe_shapes(FeatureTaps(backbone, plan), backbone) if hooked else {}
    plan = [(layer, pool, _typed(point, shapes.get(point), backbone.map_layout) if point else None)
            for layer, pool, point in plan]
    for layer, pool, point in plan:
        if point is not None:
            problem = pool_problem(pool, layout=point.layout, prefix_tokens=point.prefix_tokens)
            if problem:
                raise ConfigError(f"--pool {pool} cannot read {backbone.name} layer {layer}: it {problem}")
    taps = FeatureTaps(backbone, plan)
    dims = _output_dims(taps, backbone) if hooked else {name: backbone.num_features for name in taps._names}
    outputs = [_output(backbone, name, layer, pool, dims[name]) for name, (layer, pool, _) in zip(taps._names, plan)]
    return taps, outputs


def layer_names(backbone: Backbone) -> list[str]:
    """Module paths `--layer` accepts for this backbone (relative to its layer root)."""
    root = backbone.module.get_submodule(backbone.layer_root) if backbone.layer_root else backbone.module
    return [name for name, _ in root.named_modules() if name]


def _tap_point(backbone: Backbone, layer: str, pool: str) -> TapPoint | None:
    if layer == FINAL_LAYER:
        if pool == DEFAULT_POOL:
            return None
        if backbone.final_tap is None:
            raise ConfigError(f"{backbone.name} does not expose its final feature map, so only --pool default "
                              "applies at its last layer; pass --layer NAME for an intermediate block")
        return backbone.final_tap
    check_layer(layer)
    names = layer_names(backbone)
    if layer not in names:
        close = difflib.get_close_matches(layer, names, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        stages = [n for n in names if "." not in n][:10]
        raise ConfigError(f"{backbone.name} has no layer {layer!r}; {hint}layers are module paths such as "
                          f"{', '.join(stages)}")
    path = f"{backbone.layer_root}.{layer}" if backbone.layer_root else layer
    return TapPoint(path, "output", layout="?", prefix_tokens=backbone.prefix_tokens)


def _typed(point: TapPoint, shape: tuple[int, ...] | None, map_layout: str) -> TapPoint:
    """An intermediate tap point with its layout, now that the probe saw the tensor's rank."""
    if point.layout != "?":
        return point
    if shape is None:
        raise ConfigError(f"layer {point.path} does not run in the backbone's forward pass; pick another --layer")
    layouts = {2: "NC", 3: "NLC", 4: map_layout}
    if len(shape) not in layouts:
        raise ConfigError(f"layer {point.path} gives a {len(shape)}-d tensor {shape}; pick a layer whose output "
                          "is a feature map (B, C, H, W) or tokens (B, N, D)")
    return TapPoint(point.path, point.hook, layout=layouts[len(shape)],
                    prefix_tokens=point.prefix_tokens if len(shape) == 3 else 0)


def _output(backbone: Backbone, name: str, layer: str, pool: str, dim: int) -> TapOutput:
    tap = {k: v for k, v in (("layer", layer), ("pool", pool)) if v not in (FINAL_LAYER, DEFAULT_POOL)}
    parts = {**backbone.fingerprint_parts, **tap}
    attrs = {"backbone": backbone.name, "provider": backbone.provider, "layer": layer, "pool": pool,
             **{k: v for k, v in backbone.fingerprint_parts.items() if k not in ("layer", "pool")}}
    return TapOutput(name=name, layer=layer, pool=pool, dim=dim, fingerprint_parts=parts, attrs=attrs)


def _first_tensor(value) -> torch.Tensor:
    """Hooked outputs may be tuples (Hugging Face layers); the hidden state comes first."""
    while isinstance(value, (tuple, list)):
        value = value[0]
    return value


def _probe_shapes(taps: FeatureTaps, backbone: Backbone) -> dict[TapPoint, tuple[int, ...]]:
    """Shape (rank) of the tensor at every hooked point, from one forward pass on the meta device."""
    shapes: dict[TapPoint, tuple[int, ...]] = {}
    handles = []
    for point in taps._points:
        module = taps.backbone.get_submodule(point.path)

        def keep(value, point=point):
            shapes[point] = tuple(_first_tensor(value).shape)

        if point.hook == "input":
            handles.append(module.register_forward_pre_hook(lambda _m, args, keep=keep: keep(args[0])))
        else:
            handles.append(module.register_forward_hook(lambda _m, _a, out, keep=keep: keep(out)))
    try:
        shape_forward(taps.backbone, backbone.preprocessing)
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def _output_dims(taps: FeatureTaps, backbone: Backbone) -> dict[str, int]:
    out = shape_forward(taps, backbone.preprocessing)
    return {name: int(t.shape[1]) for name, t in out.items()}
