"""Which engine computes each feature set (a pure decision, as a table) and the fingerprints that name it."""

from __future__ import annotations

import re

import pytest

from headstart.backbones.registry import create_backbone
from headstart.backbones.taps import build_extractor
from headstart.backbones.weights import rebuild_attrs, state_sha256
from headstart.cache.fingerprint import (FINGERPRINT_VERSION, compute_fingerprint, fingerprint_differences,
                                         set_fingerprint)
from headstart.cache.plan import SamplesTable
from headstart.errors import CacheMismatchError
from headstart.extract.sets import Stored, feature_spec, settle_engine

BOTH = ("torch", "onnxruntime")
T, O = "torch", "onnxruntime"


@pytest.mark.parametrize("requested,preferred,stored,usable,expected", [
    # nothing stored: the requested (or, for auto, the preferred) engine computes everything
    ("auto", O, {"a": Stored()}, BOTH, (O, {})),
    ("torch", T, {"a": Stored()}, BOTH, (T, {})),
    # auto reuses a complete set whichever engine made it (a torch cache stays valid when onnxruntime is the
    # default), and computes the rest with its own pick
    ("auto", O, {"a": Stored(complete=T)}, BOTH, (None, {"a": T})),
    ("auto", O, {"a": Stored(complete=T), "b": Stored()}, BOTH, (O, {"a": T})),
    ("onnxruntime", O, {"a": Stored(complete=O), "b": Stored()}, BOTH, (O, {"a": O})),
    # auto finishes a partial extraction with the engine that started it
    ("auto", O, {"a": Stored(staged=T)}, BOTH, (T, {})),
    ("auto", T, {"a": Stored(staged=O), "b": Stored(complete=T)}, BOTH, (O, {"b": T})),
    ("torch", T, {"a": Stored(staged=T)}, BOTH, (T, {})),
])
def test_settled_engine(requested, preferred, stored, usable, expected):
    settled = settle_engine(requested, preferred, stored, usable=usable)
    assert (settled.engine, settled.reused) == expected


@pytest.mark.parametrize("requested,stored,usable,message", [
    ("onnxruntime", {"a": Stored(complete=T)}, BOTH,
     "feature set 'a' in c.h5 was computed by the torch engine and --engine onnxruntime was asked for; one set "
     "never mixes engines: pass --engine torch (or auto) to reuse it, or --overwrite to recompute it with "
     "onnxruntime"),
    ("torch", {"a": Stored(staged=O)}, BOTH,
     "a partial extraction of feature set 'a' next to c.h5 was staged by the onnxruntime engine and --engine torch "
     "was asked for; one set never mixes engines: rerun with --engine onnxruntime (or auto) to finish it, or pass "
     "--overwrite to discard it"),
    ("auto", {"a": Stored(staged=O)}, ("torch",),
     "a partial extraction of feature set 'a' next to c.h5 was staged by the onnxruntime engine, which cannot run "
     "here (another device or precision); rerun the original command to finish it, or pass --overwrite to "
     "discard it"),
])
def test_another_engine_is_refused_in_one_line(requested, stored, usable, message):
    with pytest.raises(CacheMismatchError, match="^" + re.escape(message) + "$") as info:
        settle_engine(requested, "torch" if requested == "torch" else "onnxruntime", stored, usable=usable,
                      where="c.h5")
    assert "\n" not in str(info.value)


def test_overwrite_recomputes_with_the_preferred_engine():
    settled = settle_engine("onnxruntime", O, {"a": Stored(complete=T, staged=T)}, usable=BOTH, overwrite=True)
    assert (settled.engine, settled.reused) == (O, {})


@pytest.fixture(scope="module")
def table():
    return SamplesTable(ids=["a", "b"], labels=[0, 1], splits=["train", "test"], groups=["", ""],
                        classes=["x", "y"], manifest_hash="m" * 64)


def _random(seed: int):
    backbone = create_backbone("resnet18", weights="random", image_size=32, seed=seed)
    _, (output,) = build_extractor(backbone)
    return backbone, output, rebuild_attrs(backbone, seed=seed)


def test_seed_weights_precision_and_engine_are_each_in_the_fingerprint(table):
    """Whatever moves a feature by more than float16 rounding is hashed: another seed draws another network (up to
    3.4 apart per feature), bf16/fp16 autocast moves features by ~1e-3."""
    backbone, output, state = _random(0)
    spec = feature_spec(backbone, output, "torch", table=table, dtype="float16", random_state=state)
    assert spec.parts["weights_seed"] == 0 and spec.parts["random_weights_sha256"] == state_sha256(backbone.module)
    assert spec.parts["precision"] == "fp32" and spec.identity()["fingerprint_version"] == FINGERPRINT_VERSION
    other_seed = feature_spec(*_random(1)[:2], "torch", table=table, dtype="float16", random_state=_random(1)[2])
    bf16 = feature_spec(backbone, output, "torch", table=table, dtype="float16", random_state=state, precision="bf16")
    onnx = feature_spec(backbone, output, "onnxruntime", table=table, dtype="float16", random_state=state,
                        precision="bf16")  # onnxruntime computes in fp32 whatever torch's autocast would be
    assert onnx.parts["engine"] == "onnxruntime" and onnx.parts["precision"] == "fp32"
    assert len({s.fingerprint for s in (spec, other_seed, bf16, onnx)}) == 4
    # verify and re-split recompute a fingerprint from the stored attributes alone: both must agree
    for s in (spec, bf16, onnx):
        assert set_fingerprint(s.identity(), table.manifest_hash) == s.fingerprint
    # the refusal names what differs, part by part
    assert fingerprint_differences(spec.identity(), other_seed.identity())[0].startswith("random_weights_sha256 ")
    assert "weights_seed 0 in the cache, 1 requested" in fingerprint_differences(spec.identity(), other_seed.identity())
    assert fingerprint_differences(spec.identity(), bf16.identity()) == ["precision fp32 in the cache, bf16 requested"]
    with pytest.raises(ValueError, match="seed and state digest"):  # random weights never go unhashed
        feature_spec(backbone, output, "torch", table=table, dtype="float16")


def test_taps_and_provider_versions_are_hashed(table):
    backbone = create_backbone("resnet18", weights="random", image_size=32, seed=0)
    _, outputs = build_extractor(backbone, layers=["final", "layer3"], pools=["default", "gem"])
    state = rebuild_attrs(backbone, seed=0)
    specs = {o.name: feature_spec(backbone, o, "torch", table=table, dtype="float16", random_state=state)
             for o in outputs}
    assert list(specs) == ["resnet18", "resnet18:gem", "resnet18:layer3", "resnet18:layer3:gem"]
    assert specs["resnet18:layer3:gem"].parts == {"layer": "layer3", "pool": "gem", "precision": "fp32", **state}
    assert specs["resnet18:layer3:gem"].attrs["layer"] == "layer3"
    assert len({s.fingerprint for s in specs.values()}) == 4
    pytest.importorskip("timm", reason="timm is not installed (pip install 'headstart[timm]')")
    timm = create_backbone("timm:resnet18", weights="random", image_size=32, seed=0)
    _, (out,) = build_extractor(timm)
    spec = feature_spec(timm, out, "torch", table=table, dtype="float16", random_state=rebuild_attrs(timm, seed=0))
    assert spec.backbone == "timm:resnet18" and spec.parts["provider"] == "timm"
    newer = dict(spec.parts, provider_version="999.0")
    assert compute_fingerprint(**_fields(spec, table), parts=newer) != spec.fingerprint  # another timm: not reused


def _fields(spec, table) -> dict:
    return dict(backbone=spec.backbone, weights_tag=spec.weights_tag, weights_sha256=spec.weights_sha256,
                preprocessing=spec.preprocessing, manifest_hash=table.manifest_hash)


def test_the_crop_is_in_the_preprocessing_record_and_the_fingerprint(table):
    backbone = create_backbone("resnet18", weights="random", image_size=32, seed=0)
    _, (output,) = build_extractor(backbone)
    state = rebuild_attrs(backbone, seed=0)
    center = feature_spec(backbone, output, "torch", table=table, dtype="float16", random_state=state)
    fingerprints = {center.fingerprint}
    for crop in ("full", "pad"):
        backbone.preprocessing = backbone.preprocessing.with_crop(crop)
        spec = feature_spec(backbone, output, "torch", table=table, dtype="float16", random_state=state)
        assert spec.preprocessing["crop"] == crop
        assert set_fingerprint(spec.identity(), table.manifest_hash) == spec.fingerprint
        fingerprints.add(spec.fingerprint)
    assert len(fingerprints) == 3 and "crop" not in center.preprocessing
