"""What every provider does alike: seeded construction, the meta-device size probe, close-name errors, and
state-dict prefixes left by headstart's own fine-tunes."""

from __future__ import annotations

import difflib
import itertools
import logging
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from headstart.backbones.types import Preprocessing
from headstart.errors import ConfigError, WeightsError, one_line

T = TypeVar("T")
log = logging.getLogger(__name__)


def seeded(seed: int, build: Callable[[], T]) -> T:
    """Run `build` with the torch RNG seeded, leaving the caller's RNG state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def meta_probe(build: Callable[[], nn.Module], prep: Preprocessing, *, name: str) -> None:
    """Build on the meta device and run one shape-only forward pass, so an impossible size fails before any work.

    A model that cannot be built or run on meta tensors (it computes with real data at init) is not judged here:
    its real forward pass will tell.
    """
    try:
        module = build()
    except (RuntimeError, NotImplementedError):
        return
    x = torch.empty(2, prep.channels, prep.input_size, prep.input_size, device="meta")
    try:
        with torch.no_grad():
            out = module.eval()(x)
    except NotImplementedError:
        return
    except Exception as exc:  # noqa: BLE001 - every shape failure means "this size does not fit this model"
        raise ConfigError(f"{name} cannot take {prep.input_size}x{prep.input_size} inputs ({one_line(exc)}); "
                          "pass another --image-size or backbone") from None
    if out.ndim != 2 or out.shape[0] != 2:  # a bug in the provider wrapper, not a user error
        raise RuntimeError(f"{name} returned {tuple(out.shape)} features, expected (2, D)")


def close_names_error(name: str, names: list[str], *, full: str, hint: str, prefix: str = "") -> ConfigError:
    """The unknown-backbone usage error, naming up to three close matches."""
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    suggestion = f"did you mean {', '.join(prefix + c for c in close)}? " if close else ""
    return ConfigError(f"unknown backbone {full!r}; {suggestion}{hint}")


def strip_prefixes(state: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Unwrap a headstart fine-tune (`backbone.` + the provider wrapper's `model.`): keep the backbone's keys."""
    for prefix in prefixes:
        if state and all(k.startswith(prefix) or k.startswith("head.") for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    return state


def shape_forward(module: nn.Module, prep: Preprocessing, *, batch: int = 2):
    """`module`'s output for a batch, computed on the meta device (shapes only: meta tensors stand in for the
    weights and the input). A model keeping plain tensors as attributes cannot run on meta; it gets one real
    forward pass on zeros instead (slower, same shapes)."""
    shape = (batch, prep.channels, prep.input_size, prep.input_size)
    tensors = {k: torch.empty_like(v, device="meta")
               for k, v in itertools.chain(module.named_parameters(), module.named_buffers())}
    with torch.no_grad():
        try:
            return functional_call(module, tensors, (torch.empty(shape, device="meta"),))
        except (RuntimeError, NotImplementedError, TypeError, ValueError) as exc:
            log.debug("meta forward failed (%s); one real forward pass instead", one_line(exc))
            device = next(itertools.chain(module.parameters(), module.buffers())).device
            return module(torch.zeros(shape, device=device))


def meta_stats(build: Callable[[], nn.Module], prep: Preprocessing) -> tuple[int | None, float | None, float | None]:
    """(feature dim, parameters in millions, GFLOPs) of a meta-device build; None for what cannot be had.

    GFLOPs counts multiply-adds (FlopCounterMode's flops / 2), the convention of torchvision's metadata.
    """
    try:
        module = build().eval()
        params = round(sum(p.numel() for p in module.parameters()) / 1e6, 1)
    except Exception as exc:  # noqa: BLE001 - a model that cannot be built on meta shows `-`
        log.debug("no meta build (%s)", one_line(exc))
        return None, None, None
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            out = module(torch.empty(1, prep.channels, prep.input_size, prep.input_size, device="meta"))
        return int(out.shape[1]), params, round(counter.get_total_flops() / 2e9, 2)
    except Exception as exc:  # noqa: BLE001 - a model that cannot run on meta shows `-`
        log.debug("no meta forward (%s)", one_line(exc))
        return None, params, None


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], *, source, name: str, advice: str) -> None:
    """Load every tensor of `model` from `state`, or refuse in one line naming the first misfits."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise WeightsError(f"weights {source} do not fit {name}: missing keys {missing[:3]}, unexpected keys "
                           f"{unexpected[:3]}, wrong shapes {wrong[:3]}; {advice}, or --weights random")
    model.load_state_dict(state, strict=True)
    model.float()  # a half-precision file must not make a half-precision backbone
