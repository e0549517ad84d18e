"""`headstart screen`: the planted winner always survives, no image passes twice through one backbone, losers
leave no feature set, and the rounds' pure decisions (subsets, drops) as tables."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from headstart.backbones.types import Backbone, Preprocessing
from headstart.cache.reader import FeatureCache
from headstart.cli import cli
from headstart.extract import features as features_module
from headstart.studies.screen_rounds import Standing, decide, grow_subset, round_sizes

DIM = 8


class Planted(nn.Module):
    """Features that carry the label: the data's classes differ in brightness, and this reads brightness."""

    def __init__(self):
        super().__init__()
        self.forwarded = 0

    def forward(self, x):
        self.forwarded += x.shape[0]
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([m * (k + 1) for k in range(DIM)], dim=1)


class Noise(nn.Module):
    """Features that ignore the image: a candidate with nothing to offer."""

    def __init__(self, seed: int):
        super().__init__()
        self.generator = torch.Generator().manual_seed(seed)
        self.forwarded = 0

    def forward(self, x):
        self.forwarded += x.shape[0]
        return torch.randn(x.shape[0], DIM, generator=self.generator)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """300 grey 16 px images of 150 patients (2 each): class `bright` is brighter than class `dark`."""
    root = tmp_path_factory.mktemp("screen") / "data"
    rng = np.random.default_rng(0)
    for p in range(150):
        label = "bright" if p % 3 == 0 else "dark"
        (root / label).mkdir(parents=True, exist_ok=True)
        for k in range(2):
            level = (150 if label == "bright" else 110) + rng.normal(0, 12)
            pixels = np.clip(rng.normal(level, 20, size=(16, 16)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").convert("RGB").save(root / label / f"p{p:03d}_{k}.png")
    return root


@pytest.fixture
def candidates(monkeypatch):
    modules: dict[str, nn.Module] = {}

    def fake_create_backbone(name, *, weights, image_size, seed, trust_remote_code=False):
        module = Planted() if name.startswith("planted") else Noise(seed=len(modules) + 1)
        modules[name] = module
        prep = Preprocessing(input_size=16, resize_size=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
        return Backbone(name=name, module=module, num_features=DIM, preprocessing=prep, weights_tag="random",
                        weights_sha256="")

    monkeypatch.setattr(features_module, "create_backbone", fake_create_backbone)
    return modules


def _screen(data, out, names, *extra):
    args = ["screen", str(data), "-o", str(out), *[a for n in names for a in ("-b", n)], "--weights", "random",
            "--image-size", "16", "--batch-size", "32", "--workers", "0", "--device", "cpu", "--val-fraction", "0.3",
            "--group-pattern", r"^(p\d+)_", "--engine", "torch", "--min-images", "100", "--n-boot", "200",
            *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result, json.loads((out.parent / (out.name + ".screen.json")).read_text())


@pytest.mark.parametrize("order, seed", [(("noise-a", "noise-b", "planted", "noise-c"), "0"),
                                         (("planted", "noise-a", "noise-b"), "1"),
                                         (("noise-a", "noise-b", "noise-c", "noise-d", "planted-z"), "2")])
def test_the_planted_candidate_always_survives_and_no_image_is_forwarded_twice(data, tmp_path, candidates, order,
                                                                               seed):
    out = tmp_path / "c.h5"
    result, doc = _screen(data, out, order, "--seed", seed)
    winner = next(name for name in order if name.startswith("planted"))
    assert doc["survivors"] == [winner] and doc["candidates"] == list(order)
    assert f"survivors: {winner}" in result.output

    n_rows = 300
    last_round = {}  # images each loser had seen when it was dropped
    for entry in doc["rounds"]:
        assert {r["backbone"] for r in entry["results"]} >= {d["backbone"] for d in entry["dropped"]}
        for r in entry["results"]:
            assert set(r) >= {"backbone", "val_auroc", "val_auroc_ci", "seconds"}
            last_round[r["backbone"]] = entry["n_images"]
        assert all(d["reason"] for d in entry["dropped"])
    sizes = [entry["n_images"] for entry in doc["rounds"]]
    assert sizes == sorted(sizes) and sizes[0] >= 100
    for name, module in candidates.items():  # counted inside the modules: every image at most once each
        assert module.forwarded == (n_rows if name == winner else last_round[name]), name

    with FeatureCache(out) as cache:  # losers keep no feature set; the winner is complete on every row
        assert list(cache.feature_sets) == [winner] and cache.feature_sets[winner]["complete"]
        X, valid = cache.load(winner)
        assert valid.all() and X.shape == (n_rows, DIM)
    assert not (tmp_path / "c.h5.parts").exists()


def test_screen_keeps_k_and_its_features_equal_a_plain_extraction(data, tmp_path, candidates):
    out = tmp_path / "c.h5"
    _, doc = _screen(data, out, ("noise-a", "planted", "noise-b"), "--keep", "2")
    assert len(doc["survivors"]) == 2 and "planted" in doc["survivors"]
    with FeatureCache(out) as cache:
        assert sorted(cache.feature_sets) == sorted(doc["survivors"])
        X, _ = cache.load("planted")
        ids = list(cache.ids)
    pixels = []  # what the planted module computes, image by image, outside the screen
    for image_id in ids:
        image = np.asarray(Image.open(data / image_id).convert("RGB"), dtype=np.float32) / 255.0
        pixels.append(((image - 0.5) / 0.25).mean())
    np.testing.assert_allclose(X[:, 0], np.asarray(pixels), rtol=1e-2, atol=1e-2)


def test_unknown_head_and_bad_keep_are_usage_errors(data, tmp_path, candidates):
    for args, needle in ((["--head", "svm"], "svm"), (["--keep", "0"], "0")):
        result = CliRunner().invoke(cli, ["screen", str(data), "-o", str(tmp_path / "c.h5"), "-b", "a", *args])
        assert result.exit_code == 2 and needle in result.output


def test_round_sizes_double_until_the_whole_pool():
    assert round_sizes(5216, fraction=0.1, min_images=200) == [522, 1044, 2088, 4176, 5216]
    assert round_sizes(1000, fraction=0.1, min_images=200) == [200, 400, 800, 1000]
    assert round_sizes(150, fraction=0.1, min_images=200) == [150]


def test_grown_subsets_are_nested_stratified_and_never_split_a_patient():
    rng = np.random.default_rng(0)
    n = 600
    groups = np.array([f"p{i // 3}" for i in range(n)], dtype=object)
    ids = np.array([f"img{i}" for i in range(n)], dtype=object)
    labels = np.repeat(rng.integers(0, 2, n // 3), 3)
    is_val = np.repeat((rng.random(n // 3) < 0.2).astype(int), 3)
    strata = labels * 2 + is_val
    have = np.zeros(0, dtype=np.int64)
    for i, target in enumerate(round_sizes(n, fraction=0.1, min_images=60)):
        grown = grow_subset(ids, strata, groups, have=have, target=target, seed=0, round_index=i)
        assert set(have.tolist()) <= set(grown.tolist())  # nested: what a round forwarded is reused
        assert abs(len(grown) - target) <= 6
        inside = set(groups[grown])
        assert not inside & set(groups[np.setdiff1d(np.arange(n), grown)])  # whole patients only
        share = np.bincount(strata[grown], minlength=4) / len(grown)
        assert np.abs(share - np.bincount(strata, minlength=4) / n).max() < 0.08
        have = grown
    assert len(have) == n


@pytest.mark.parametrize("standings, keep, final, survivors, reasons", [
    # the interval rule: c's upper end is below a's lower end
    ([("a", 0.90, 0.85, 0.95), ("b", 0.88, 0.80, 0.93), ("c", 0.60, 0.50, 0.70)], 1, False, ["a", "b"],
     {"c": "interval upper end"}),
    # the bottom half of four: no interval separates them
    ([("a", 0.8, 0.6, 0.95), ("b", 0.79, 0.6, 0.95), ("c", 0.78, 0.6, 0.95), ("d", 0.7, 0.5, 0.9)], 1, False,
     ["a", "b"], {"c": "bottom half", "d": "bottom half"}),
    # never below keep, even when intervals separate
    ([("a", 0.95, 0.92, 0.98), ("b", 0.6, 0.5, 0.7), ("c", 0.55, 0.45, 0.65)], 2, False, ["a", "b"],
     {"c": "interval upper end"}),
    # the last round (the subset is everything) cuts to keep
    ([("a", 0.8, 0.6, 0.95), ("b", 0.79, 0.6, 0.95)], 1, True, ["a"], {"b": "top 1"}),
    # NaN ranks last
    ([("a", math.nan, math.nan, math.nan), ("b", 0.7, 0.6, 0.8)], 1, False, ["b"], {"a": "bottom half"}),
])
def test_drop_decisions(standings, keep, final, survivors, reasons):
    alive, dropped = decide([Standing(n, v, (lo, hi)) for n, v, lo, hi in standings], keep=keep, final=final)
    assert alive == survivors
    assert {d["backbone"] for d in dropped} == set(reasons)
    for d in dropped:
        assert reasons[d["backbone"]] in d["reason"]


@pytest.mark.parametrize("layout", ["nih", "csv"])
def test_multilabel_data_is_ranked_by_val_macro_auroc(tmp_path, candidates, layout):
    """An NIH folder (or the same images in a CSV read with extract's `--labels`), where Effusion brightens the
    image and Atelectasis does not: the planted (brightness) candidate wins on val macro AUROC over the findings
    with both classes, each round's score is that macro."""
    from tests.data.multilabel_files import NIH_FINDINGS, NIH_HEADER

    root = tmp_path / "nih"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines, csv_lines = [NIH_HEADER], ["path,Effusion,Atelectasis,group"]
    for p in range(1, 151):
        for k in range(2):
            name = f"{p:08d}_{k:03d}.png"
            found = [f for f in ("Effusion", "Atelectasis") if rng.random() < 0.4]
            level = (150 if "Effusion" in found else 110) + rng.normal(0, 12)
            pixels = np.clip(rng.normal(level, 20, size=(16, 16)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(root / "images" / name)
            lines.append(f"{name},{'|'.join(found) or 'No Finding'},{k},{p},40,M,PA,2500,2048,0.143,0.143")
            csv_lines.append(f"images/{name},{int('Effusion' in found)},{int('Atelectasis' in found)},p{p}")
    (root / "Data_Entry_2017_v2020.csv").write_text("\n".join(lines) + "\n")
    source, reader = str(root), []
    if layout == "csv":
        source, reader = str(tmp_path / "m.csv"), ["--labels", "Effusion,Atelectasis"]
        (tmp_path / "m.csv").write_text("\n".join(csv_lines).replace("images/", "nih/images/") + "\n")
    out = tmp_path / "c.h5"
    args = ["screen", source, *reader, "-o", str(out), "-b", "noise-a", "-b", "planted", "-b", "noise-b", "--weights",
            "random", "--image-size", "16", "--batch-size", "32", "--workers", "0", "--device", "cpu",
            "--val-fraction", "0.3", "--engine", "torch", "--min-images", "100", "--n-boot", "100"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "c.h5.screen.json").read_text())
    assert doc["task"] == "multilabel" and doc["metric"] == "macro auroc" and doc["survivors"] == ["planted"]
    assert "planted                  val macro AUROC" in result.output
    for entry in doc["rounds"]:
        scores = {r["backbone"]: r["val_auroc"] for r in entry["results"]}
        # two findings carry labels (NIH's other twelve have no positive and are left out): the macro is the mean
        # of Effusion (readable from brightness) and Atelectasis (not), so it sits near (1 + 0.5) / 2 for planted
        assert 0.6 < scores["planted"] < 0.9
        assert all(abs(v - 0.5) < 0.2 for k, v in scores.items() if k != "planted")
        for r in entry["results"]:
            assert r["val_auroc_ci"][0] <= r["val_auroc"] <= r["val_auroc_ci"][1]
    assert len(NIH_FINDINGS) == 14
