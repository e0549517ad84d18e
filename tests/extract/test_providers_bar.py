"""Issue 15's bar check through the command line: torchvision, timm and torchxrayvision backbones (random weights)
into one cache, two pools from one run, heads on every set, and the usage/offline errors. Tiny phantoms keep it
to seconds; xrv runs at its fixed 224 px."""

from __future__ import annotations

import json

import pytest

from tests.extract.test_extract import invoke

pytest.importorskip("timm", reason="timm is not installed (pip install 'headstart[timm]')")
pytest.importorskip("torchxrayvision", reason="torchxrayvision is not installed (pip install 'headstart[xrv]')")

FAST = ["--weights", "random", "--batch-size", "16", "--workers", "0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from headstart.data.synthetic import make_phantom_dataset

    return make_phantom_dataset(tmp_path_factory.mktemp("bar") / "cxr", n_train=16, n_test=8, val=8, image_size=40,
                                seed=1)


@pytest.fixture
def offline_hf(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # empty: no timm weights cached
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)


def test_three_providers_two_pools_and_heads_on_every_set(data, tmp_path, offline_hf):
    cache = tmp_path / "c.h5"
    steps = [
        ["-b", "resnet18", "-b", "timm:resnet18", "--image-size", "64"],
        ["-b", "xrv:densenet121-res224-all"],  # its fixed size
        ["-b", "timm:vit_tiny_patch16_224", "--pool", "cls", "--pool", "mean", "--image-size", "32"],
    ]
    for args in steps:
        r = invoke("extract", str(data), "-o", str(cache), *args, *FAST)
        assert r.exit_code == 0, r.output
    assert "extracted timm:vit_tiny_patch16_224:cls, timm:vit_tiny_patch16_224:mean for 32 images" in r.output
    info = json.loads(invoke("cache", "info", str(cache), "--json").output)
    sets = {s["name"]: (s["backbone"], s["pool"], s["dim"], s["complete"]) for s in info["feature_sets"]}
    assert sets == {
        "resnet18": ("resnet18", "default", 512, True),
        "timm:resnet18": ("timm:resnet18", "default", 512, True),
        "xrv:densenet121-res224-all": ("xrv:densenet121-res224-all", "default", 1024, True),
        "timm:vit_tiny_patch16_224:cls": ("timm:vit_tiny_patch16_224", "cls", 192, True),
        "timm:vit_tiny_patch16_224:mean": ("timm:vit_tiny_patch16_224", "mean", 192, True),
    }
    assert invoke("cache", "verify", str(cache)).exit_code == 0

    runs = tmp_path / "runs"
    r = invoke("heads", str(cache), "-o", str(runs), "--head", "logreg", "--head", "knn", "--sweep", "quick",
               "--n-boot", "20")
    assert r.exit_code == 0, r.output
    records = [json.loads(p.read_text()) for p in runs.glob("*/record.json")]
    assert sorted((rec["config"]["feature_set"], rec["head"]) for rec in records) == sorted(
        (name, head) for name in sets for head in ("logreg", "knn"))  # heads sweeps every set by default
    assert {rec["backbone"] for rec in records} == {backbone for backbone, *_ in sets.values()}


def test_usage_and_offline_errors(data, tmp_path, offline_hf, monkeypatch):
    monkeypatch.delenv("HEADSTART_OFFLINE")  # Hugging Face's own switch alone must keep timm off the network
    out = str(tmp_path / "c.h5")
    unknown = invoke("extract", str(data), "-o", out, "-b", "timm:resnet181", *FAST)
    assert unknown.exit_code == 2 and "unknown backbone 'timm:resnet181'; did you mean timm:resnet18" in unknown.output
    size = invoke("extract", str(data), "-o", out, "-b", "xrv:densenet121-res224-all", "--image-size", "64", *FAST)
    assert size.exit_code == 2 and "224" in size.output
    offline = invoke("extract", str(data), "-o", out, "-b", "timm:resnet18", "--weights", "imagenet")
    assert offline.exit_code == 1
    (line,) = offline.output.strip().splitlines()
    assert line.startswith("Error: ") and "--weights random" in line and "HF_HUB_OFFLINE" in line
    pool = invoke("extract", str(data), "-o", out, "-b", "resnet18", "--pool", "cls", *FAST)
    assert pool.exit_code == 2 and "--pool cls cannot read resnet18" in pool.output
