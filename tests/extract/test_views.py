"""extract --views K --augment PRESET --tta M: cached views beside the plain features, one decode per image."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from headstart.backbones.types import Preprocessing
from headstart.data.augment import tta_views, views
from headstart.extract.preprocess import normalize_batch, to_uint8_tensor, view_base
from tests.cli_run import invoke

BASE = ["--weights", "random", "--image-size", "32", "--batch-size", "8", "--workers", "0", "--engine", "torch"]



@pytest.fixture(scope="module")
def views_cache(phantom_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("views") / "c.h5"
    r = invoke("extract", str(phantom_dir), "-o", str(out), "-b", "resnet18", *BASE, "--views", "3",
               "--augment", "light", "--tta", "2")
    assert r.exit_code == 0, r.output
    return out


def test_views_stored_beside_plain_features(views_cache):
    with h5py.File(views_cache, "r") as f:
        n = len(f["samples/id"])
        splits = np.array([s.decode() for s in f["samples/split"][...]])
        plain = f["features/resnet18"]
        v, t = f["features/resnet18.views"], f["features/resnet18.tta"]
        assert plain.shape == (n, 512) and v.shape == (n, 3 * 512) and t.shape == (n, 2 * 512)
        assert v.dtype == np.float16 and v.chunks is not None and v.chunks[1] == 3 * 512  # chunked by row
        assert v.attrs["view_of"] == "resnet18" and int(v.attrs["views"]) == 3 and v.attrs["augment"] == "light"
        # train rows have views, val/test rows test-time views; the others are zeros marked invalid
        assert (f["valid/resnet18.views"][...] == (splits == "train")).all()
        assert (f["valid/resnet18.tta"][...] == np.isin(splits, ["val", "test"])).all()
        x, xv = plain[...].astype(np.float32), v[...].astype(np.float32).reshape(n, 3, 512)
        train = np.flatnonzero(splits == "train")
        assert not np.abs(xv[splits != "train"]).any()
        # every view differs from the plain view and from the other views (they are augmented)
        assert (np.abs(xv[train] - x[train, None]).max(axis=2) > 0).all()
        assert (np.abs(xv[train, 0] - xv[train, 1]).max(axis=1) > 0).all()
        assert v.attrs["fingerprint"] != plain.attrs["fingerprint"]


def test_views_equal_the_augmented_pixels_through_the_backbone(views_cache, phantom_dir):
    """Row i's view k is the backbone's features of `augment.views(image, id, k, seed=0)`, cropped as the plain
    view is: recomputed here from the image file, independently of the loader."""
    from PIL import Image

    from headstart.extract.features import build_feature_models

    with h5py.File(views_cache, "r") as f:
        ids = [s.decode() for s in f["samples/id"][...]]
        splits = [s.decode() for s in f["samples/split"][...]]
        stored_v = f["features/resnet18.views"][...].reshape(len(ids), 3, 512)
        stored_t = f["features/resnet18.tta"][...].reshape(len(ids), 2, 512)
    i, j = splits.index("train"), splits.index("test")
    (model,) = build_feature_models(["resnet18"], weights="random", image_size=32, seed=0)
    prep: Preprocessing = model.backbone.preprocessing

    def feats(imgs):
        x = torch.stack([to_uint8_tensor(im, prep) for im in imgs])
        with torch.inference_mode():
            return model.taps(normalize_batch(x, prep, device="cpu"))["resnet18"].float().numpy()

    img_i = Image.open(phantom_dir / ids[i]).convert("L")
    img_j = Image.open(phantom_dir / ids[j]).convert("L")
    assert view_base(img_i, prep).size < img_i.size  # the views are drawn on the plain view's downscale
    np.testing.assert_allclose(feats(views(view_base(img_i, prep), ids[i], 3, 0, "light")), stored_v[i], atol=2e-2,
                               rtol=1e-2)
    np.testing.assert_allclose(feats(tta_views(view_base(img_j, prep), 2)), stored_t[j], atol=2e-2, rtol=1e-2)


def test_cache_info_shows_k_m_and_preset(views_cache):
    r = invoke("cache", "info", str(views_cache), "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert [s["name"] for s in info["feature_sets"]] == ["resnet18"]  # views are not feature sets of their own
    entry = info["feature_sets"][0]
    assert (entry["views"], entry["tta"], entry["augment"]) == (3, 2, "light")
    kinds = {v["kind"]: v for v in info["view_sets"]}
    assert kinds["views"]["views"] == 3 and kinds["tta"]["views"] == 2 and kinds["views"]["seed"] == 0
    text = invoke("cache", "info", str(views_cache))
    assert "3 views (light)" in text.output and "2 test-time views" in text.output
    assert invoke("cache", "verify", str(views_cache)).exit_code == 0


def test_each_image_decoded_once_with_views(phantom_dir, tmp_path, monkeypatch):
    from headstart.data import sources
    from headstart.extract.config import ExtractConfig
    from headstart.extract.runner import run_extract

    calls: list[str] = []
    real = sources.load_source

    def counting_load_source(*a, **k):
        src = real(*a, **k)
        for name in ("load", "load_with_meta"):

            def counted(sample, _orig=getattr(src, name), **kw):
                calls.append(sample.id)
                return _orig(sample, **kw)

            setattr(src, name, counted)
        return src

    monkeypatch.setattr("headstart.data.dataset.load_source", counting_load_source)
    cfg = ExtractConfig(backbones=["resnet18", "densenet121"], weights="random", image_size=32, batch_size=8,
                        workers=0, engine="torch", views=2, tta=1)
    result = run_extract(data=str(phantom_dir), output=str(tmp_path / "c.h5"), config=cfg)
    assert set(result.extracted) == {"resnet18", "resnet18.views", "resnet18.tta", "densenet121",
                                     "densenet121.views", "densenet121.tta"}
    assert len(calls) == result.n_images == len(set(calls))  # every view of both backbones from one decode


def test_adding_views_keeps_the_plain_set_and_a_new_preset_re_extracts_only_views(phantom_dir, tmp_path):
    out = tmp_path / "c.h5"
    assert invoke("extract", str(phantom_dir), "-o", str(out), "-b", "resnet18", *BASE).exit_code == 0
    with h5py.File(out, "r") as f:
        plain = f["features/resnet18"][...]
        fp = f["features/resnet18"].attrs["fingerprint"]
    r = invoke("extract", str(phantom_dir), "-o", str(out), "-b", "resnet18", *BASE, "--views", "2")
    assert r.exit_code == 0, r.output
    assert "already complete" in r.output and "resnet18.views" in r.output
    with h5py.File(out, "r") as f:
        assert f["features/resnet18"].attrs["fingerprint"] == fp
        np.testing.assert_array_equal(f["features/resnet18"][...], plain)
        light = f["features/resnet18.views"][...]
        fp_light = f["features/resnet18.views"].attrs["fingerprint"]
    r = invoke("extract", str(phantom_dir), "-o", str(out), "-b", "resnet18", *BASE, "--views", "2",
               "--augment", "medium")
    assert r.exit_code != 0 and "Traceback" not in r.output  # another preset: refused without --overwrite
    r = invoke("extract", str(phantom_dir), "-o", str(out), "-b", "resnet18", *BASE, "--views", "2",
               "--augment", "medium", "--overwrite")
    assert r.exit_code == 0, r.output
    with h5py.File(out, "r") as f:
        assert f["features/resnet18.views"].attrs["fingerprint"] != fp_light
        assert not np.array_equal(f["features/resnet18.views"][...], light)
        np.testing.assert_array_equal(f["features/resnet18"][...], plain)


def test_bad_view_options_are_one_line_errors(phantom_dir, tmp_path):
    r = invoke("extract", str(phantom_dir), "-o", str(tmp_path / "c.h5"), *BASE, "--views", "2", "--decode",
               "device")
    assert r.exit_code != 0 and "--decode cpu" in r.output
    r = invoke("extract", str(phantom_dir), "-o", str(tmp_path / "c.h5"), *BASE, "--tta", "99")
    assert r.exit_code != 0 and "--tta" in r.output
