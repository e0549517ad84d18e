"""The Hugging Face hub cache, where timm and `hf:` weights live: find a repository's files, fetch unless offline.

The cache folder is read from the environment at each call (HF_HUB_CACHE, else HF_HOME/hub, else
$XDG_CACHE_HOME/huggingface/hub), not from huggingface_hub's import-time constants, so a test or a caller can
point it elsewhere. Offline (HF_HUB_OFFLINE=1 or HEADSTART_OFFLINE=1) nothing is downloaded: a missing file is one
WeightsError line naming the repository, the cache folder and the alternatives.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from headstart.backbones.providers import is_offline, offline_reason
from headstart.errors import WeightsError, one_line

log = logging.getLogger(__name__)

ALTERNATIVES = "pass --weights random, or --weights PATH for a local .safetensors or .pth state dict"


def hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return xdg / "huggingface" / "hub"


def cached_file(repo_id: str, filename: str) -> Path | None:
    """The cached file of `repo_id` at its `main` revision, or None when it is not in the cache."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=str(hub_cache_dir()))
    return Path(found) if isinstance(found, str) else None


def cached_repos() -> list[str]:
    """ORG/NAME of every model repository in the hub cache (a folder listing; nothing is looked up online)."""
    cache = hub_cache_dir()
    return [p.name.removeprefix("models--").replace("--", "/") for p in cache.glob("models--*--*")] \
        if cache.is_dir() else []


def first_cached(repo_id: str, filenames: tuple[str, ...]) -> Path | None:
    return next((p for p in (cached_file(repo_id, f) for f in filenames) if p is not None), None)


def fetch_file(repo_id: str, filenames: tuple[str, ...], *, what: str) -> Path:
    """The first of `filenames` (in order of preference) found in the cache, else downloaded unless offline."""
    found = first_cached(repo_id, filenames)
    if found is not None:
        return found
    if is_offline():
        raise WeightsError(f"{what} ({repo_id}: {' or '.join(filenames)}) are not in the hub cache {hub_cache_dir()} "
                           f"and {offline_reason()} forbids downloading them; {ALTERNATIVES}")
    from huggingface_hub import hf_hub_download

    reasons = []
    for filename in filenames:
        try:
            log.info("downloading %s/%s into %s", repo_id, filename, hub_cache_dir())
            return Path(hf_hub_download(repo_id, filename, cache_dir=str(hub_cache_dir())))
        except Exception as exc:  # noqa: BLE001 - a missing file, no network, a gated repo: one readable reason
            reasons.append(f"{filename}: {type(exc).__name__}: {one_line(exc, limit=80)}")
    raise WeightsError(f"{what} could not be downloaded from {repo_id} ({'; '.join(reasons)}); {ALTERNATIVES}")


def snapshot(repo_id: str, *, patterns: tuple[str, ...], what: str) -> Path:
    """The cached snapshot folder of `repo_id` (its `main` revision), downloading `patterns` first unless offline.

    A snapshot holding `config.json` counts as cached: the caller checks that the files it needs are there.
    """
    config = cached_file(repo_id, "config.json")
    if config is not None:
        return config.parent
    if is_offline():
        raise WeightsError(f"{what} ({repo_id}) is not in the hub cache {hub_cache_dir()} and {offline_reason()} "
                           "forbids downloading it; run once online (its config.json is needed whatever --weights), "
                           "or set HF_HOME to the cache that holds it")
    from huggingface_hub import snapshot_download

    try:
        log.info("downloading %s (%s) into %s", repo_id, ", ".join(patterns), hub_cache_dir())
        return Path(snapshot_download(repo_id, allow_patterns=list(patterns), cache_dir=str(hub_cache_dir())))
    except Exception as exc:  # noqa: BLE001 - no network, an unknown or gated repo: one readable reason
        raise WeightsError(f"{what} ({repo_id}) could not be downloaded ({type(exc).__name__}: {one_line(exc)}); "
                           f"check the name, or {ALTERNATIVES}") from None
