"""Backbone providers: one small module per model library, each answering the same questions.

Every provider module defines:
    PROVIDER                      its prefix ("timm")
    list_names(pattern=None)      model names it can build (fnmatch pattern), sorted
    recommended()                 the short list `headstart backbones` shows by default
    check_name(model, tag)        ConfigError with close names for an unknown model (exit 2)
    create(parsed, *, weights, image_size, seed, trust_remote_code) -> Backbone   (frozen, eval mode)
    describe(parsed) -> dict      offline facts: dim, params, GFLOPs, input size, weight tags, cached
A provider module imports its package at import time, so it is imported only through `load()`, which checks the
package first: the core install never imports timm, torchxrayvision or transformers.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from types import ModuleType

from headstart.errors import DependencyError


@dataclass(frozen=True)
class ProviderInfo:
    packages: tuple[str, ...]  # import names that must be present
    distribution: str  # the pip distribution whose version goes into fingerprints
    extra: str | None  # the headstart extra that installs it; None: a core dependency


PROVIDER_INFO = {
    "torchvision": ProviderInfo(("torchvision",), "torchvision", None),
    "timm": ProviderInfo(("timm",), "timm", "timm"),
    "xrv": ProviderInfo(("torchxrayvision",), "torchxrayvision", "xrv"),
    "hf": ProviderInfo(("transformers", "safetensors", "huggingface_hub"), "transformers", "hf"),
}

_TRUTHY = {"1", "true", "yes", "on"}
OFFLINE_ENVS = ("HEADSTART_OFFLINE", "HF_HUB_OFFLINE")  # either one set: never try to download weights


def _switched_on(env: str) -> bool:
    return os.environ.get(env, "").strip().lower() in _TRUTHY


def is_offline() -> bool:
    """True when the user asked for no network: HEADSTART_OFFLINE=1 or Hugging Face's HF_HUB_OFFLINE=1."""
    return any(_switched_on(env) for env in OFFLINE_ENVS)


def offline_reason() -> str:
    """Which switch made us offline, e.g. `HF_HUB_OFFLINE=1`, for the one-line error."""
    return next(f"{env}={os.environ[env]}" for env in OFFLINE_ENVS if _switched_on(env))


def missing_packages(provider: str) -> list[str]:
    return [p for p in PROVIDER_INFO[provider].packages if importlib.util.find_spec(p) is None]


def is_installed(provider: str) -> bool:
    return not missing_packages(provider)


def installed_providers() -> list[str]:
    return [p for p in PROVIDER_INFO if is_installed(p)]


def package_version(provider: str) -> str:
    return importlib.metadata.version(PROVIDER_INFO[provider].distribution)


def load(provider: str) -> ModuleType:
    """The provider's module; DependencyError (exit 1, one line with the pip command) when its extra is missing."""
    info = PROVIDER_INFO[provider]
    missing = missing_packages(provider)
    if missing:
        raise DependencyError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: "
                              f"pip install 'headstart[{info.extra}]'")
    try:
        return importlib.import_module(f"headstart.backbones.providers.{provider}")
    except ImportError as exc:  # installed but broken (a version clash): still one line, not a traceback
        raise DependencyError(f"{info.distribution} is installed but cannot be imported ({exc}); reinstall it with "
                              f"pip install --force-reinstall 'headstart[{info.extra}]'") from None
