"""The feature sets an extraction writes: their specs (fingerprints) under an engine, and which engine computes them.

One feature set never mixes engines, and a set already in the cache is never silently recomputed by another one:
- `--engine torch` or `--engine onnxruntime` is what the user asked for. A complete set, or a partial extraction,
  made by the other engine is refused in one line naming both (`--overwrite` recomputes it).
- `--engine auto` means "whichever is fastest here", so it defers to what the cache holds: a complete set is
  reused whichever engine made it (a plain `-b resnet18` cache made by torch before onnxruntime became the CPU
  default stays valid and is not recomputed), and a partial extraction is finished by the engine that started it.
  Otherwise auto takes `choose_engine`'s pick (onnxruntime on the CPU).

`settle_engine` is the pure decision (tested as a table); `stored_engines` reads which engine's fingerprint
matches what is at the cache path (the header and the staging state, read-only), by computing each set's
fingerprint under every engine. Every engine but torch is named in the fingerprint parts (torch is the default
and unnamed); the precision each engine computes in is always hashed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from headstart.backbones.taps import TapOutput
from headstart.backbones.types import Backbone
from headstart.cache.fingerprint import compute_fingerprint, set_fingerprint
from headstart.cache.header import FileKind, read_header
from headstart.cache.plan import FeatureSetSpec, SamplesTable
from headstart.cache.schema import staging_dir
from headstart.cache.staging import StagingArea
from headstart.errors import CacheMismatchError

ENGINE_NAMES = ("torch", "onnxruntime")  # engines that compute features (auto resolves to one of them)
HASHLESS_ENGINE = "torch"  # the engine every set had before engines existed: not hashed, old fingerprints hold


def feature_spec(backbone: Backbone, output: TapOutput, engine: str, *, table: SamplesTable, dtype: str,
                 decode: str = "cpu", precision: str = "fp32", random_state: Mapping | None = None) -> FeatureSetSpec:
    """The spec of one (backbone, layer, pool) set computed by `engine`; the one place its fingerprint is made.

    `precision` is torch's compute precision (onnxruntime always computes in fp32) and `random_state` is
    `rebuild_attrs(backbone, seed=...)`, the seed and state sha256 of random weights: both are hashed (see
    `cache.fingerprint`), so another seed or another precision is never reused as this set.
    """
    prep = backbone.preprocessing.to_dict()
    if decode != "cpu":  # its resampling differs slightly from PIL's; cpu-mode fingerprints stay as they were
        prep["decode"] = decode
    if backbone.weights_tag == "random" and not random_state:
        raise ValueError(f"{backbone.name}: random weights need their seed and state digest in the fingerprint")
    parts = {**output.fingerprint_parts, **(random_state or {})}
    if engine != HASHLESS_ENGINE:
        parts["engine"] = engine
    parts["precision"] = "fp32" if engine == "onnxruntime" else precision
    return FeatureSetSpec(
        name=output.name, backbone=backbone.name, weights_tag=backbone.weights_tag,
        weights_sha256=backbone.weights_sha256, preprocessing=prep, dim=output.dim, dtype=dtype, parts=parts,
        attrs={k: v for k, v in output.attrs.items() if v is not None},
        fingerprint=compute_fingerprint(backbone=backbone.name, weights_tag=backbone.weights_tag,
                                        weights_sha256=backbone.weights_sha256, preprocessing=prep,
                                        manifest_hash=table.manifest_hash, parts=parts),
    )


@dataclass(frozen=True)
class Stored:
    """Which engine made what the cache path already holds of one set (None: nothing, or another request's)."""

    complete: str | None = None  # a complete set in the cache file whose fingerprint matches under this engine
    staged: str | None = None  # a partial extraction in the staging folder whose fingerprint matches


@dataclass(frozen=True)
class Settled:
    """One backbone's engine decision."""

    engine: str | None  # computes the backbone's remaining sets; None when every set is reused
    reused: dict[str, str] = field(default_factory=dict)  # complete sets kept as they are -> the engine that made them
    reason: str = ""  # for the log line


def settle_engine(requested: str, preferred: str, stored: Mapping[str, Stored], *, usable: Iterable[str],
                  overwrite: bool = False, where: str = "the cache") -> Settled:
    """The engine for one backbone's sets. `requested` is --engine (auto|torch|onnxruntime), `preferred` what
    auto picks here, `stored` what the cache holds per set name, `usable` the engines this device can run.
    Raises CacheMismatchError (one line) when an explicit engine meets sets made by the other one."""
    usable = set(usable)
    if overwrite:
        return Settled(preferred, reason="--overwrite recomputes every set")
    for name, s in stored.items():
        if requested != "auto" and s.complete not in (None, requested):
            raise CacheMismatchError(
                f"feature set '{name}' in {where} was computed by the {s.complete} engine and --engine {requested} "
                f"was asked for; one set never mixes engines: pass --engine {s.complete} (or auto) to reuse it, or "
                f"--overwrite to recompute it with {requested}")
    reused = {name: s.complete for name, s in stored.items() if s.complete}
    todo = [name for name in stored if name not in reused]
    if not todo:
        return Settled(None, reused, reason=f"every set is already in {where}")
    staged = {stored[name].staged for name in todo} - {None}
    if not staged:
        return Settled(preferred, reused, reason="")
    engine = sorted(staged)[0]
    name = next(n for n in todo if stored[n].staged == engine)
    if requested not in ("auto", engine):
        raise CacheMismatchError(
            f"a partial extraction of feature set '{name}' next to {where} was staged by the {engine} engine and "
            f"--engine {requested} was asked for; one set never mixes engines: rerun with --engine {engine} (or "
            f"auto) to finish it, or pass --overwrite to discard it")
    if len(staged) > 1 or engine not in usable:
        raise CacheMismatchError(
            f"a partial extraction of feature set '{name}' next to {where} was staged by the {engine} engine, which "
            f"cannot run here ({'mixed engines' if len(staged) > 1 else 'another device or precision'}); rerun "
            f"the original command to finish it, or pass --overwrite to discard it")
    return Settled(engine, reused, reason=f"finishing the partial extraction staged by {engine}")


def stored_engines(path: str | Path, table: SamplesTable,
                   specs: Mapping[str, Mapping[str, FeatureSetSpec]]) -> dict[str, Stored]:
    """Per set name, the engine whose fingerprint (`specs[engine][name]`) matches the complete set in the cache file
    and the partial extraction in its staging folder. Read-only; anything unreadable counts as nothing stored
    (the planner refuses it later with its own one-line reason)."""
    header = read_header(path)
    complete: dict[str, str] = {}
    if header.kind is FileKind.CACHE:
        for name, meta in header.feature_sets.items():
            if meta.get("complete"):
                try:
                    complete[name] = set_fingerprint(meta, table.manifest_hash)  # re-split: under the new splits
                except (KeyError, TypeError, ValueError):
                    continue
    staging = StagingArea(staging_dir(path), n_rows=len(table), manifest_hash=table.manifest_hash)
    state = staging.read_state()
    staged = {}
    if staging.compatible(state):
        staged = {name: entry.get("fingerprint") for name, entry in state["sets"].items() if isinstance(entry, dict)}
    names = {name for by_name in specs.values() for name in by_name}

    def matching(fingerprints: dict[str, str], name: str) -> str | None:
        return next((e for e, by_name in specs.items() if name in by_name
                     and fingerprints.get(name) == by_name[name].fingerprint), None)

    return {name: Stored(matching(complete, name), matching(staged, name)) for name in sorted(names)}
