"""Augmentation presets and views: seeded by (image id, view, seed) alone, no flip unless asked, fixed TTA views."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from headstart.data.augment import MAX_TTA, PRESETS, Preset, augment, get_preset, tta_views, view_generator, views
from headstart.errors import ConfigError


def _image(w: int = 53, h: int = 41) -> Image.Image:
    """A grey image with structure everywhere, bright on its left half (the side a flip would move)."""
    rng = np.random.default_rng(0)
    arr = (rng.random((h, w)) * 80).astype(np.uint8)
    arr[:, : w // 2] += 150
    return Image.fromarray(arr, mode="L")


def _pixels(img) -> np.ndarray:
    return np.asarray(img) if isinstance(img, Image.Image) else img.numpy()


def test_light_is_the_documented_preset():
    light = PRESETS["light"]
    assert light.crop_scale == (0.8, 1.0) and light.rotation_degrees == 10.0
    assert light.brightness == 0.1 and light.contrast == 0.1 and light.hflip is False
    assert [name for name, p in PRESETS.items() if p.hflip] == ["light-flip"]  # a flip is an explicit choice


@pytest.mark.parametrize("as_tensor", [False, True])
def test_same_id_view_and_seed_give_identical_pixels(as_tensor):
    img = _image()
    if as_tensor:
        img = torch.from_numpy(np.array(img))[None]  # (1, H, W) uint8: v2 ops take tensors as well
    one, two = views(img, "train/a.png", 3, 7, "light"), views(img, "train/a.png", 3, 7, "light")
    assert all(np.array_equal(_pixels(a), _pixels(b)) for a, b in zip(one, two))
    assert all(_pixels(v).shape == _pixels(img).shape for v in one)  # a view keeps the image's size
    # a different view index, seed or image id is another draw
    assert not np.array_equal(_pixels(one[0]), _pixels(one[1]))
    assert not np.array_equal(_pixels(one[0]), _pixels(views(img, "train/a.png", 1, 8, "light")[0]))
    assert not np.array_equal(_pixels(one[0]), _pixels(views(img, "train/b.png", 1, 7, "light")[0]))
    # view k does not depend on how many views were asked for (a resume or another K keeps the first ones)
    assert np.array_equal(_pixels(views(img, "train/a.png", 1, 7, "light")[0]), _pixels(one[0]))


def test_views_are_the_same_in_another_process_with_another_hash_seed(tmp_path):
    """The seed comes from sha256, not Python's salted hash(): another interpreter draws the same views."""
    _image().save(tmp_path / "x.png")
    script = ("import hashlib, sys, numpy as np; from PIL import Image; from headstart.data.augment import views\n"
              "img = Image.open(sys.argv[1]); img.load()\n"
              "print(hashlib.sha256(b''.join(np.asarray(v).tobytes() for v in views(img, 'p/x.png', 2, 3, 'light')))"
              ".hexdigest())")
    root = Path(__file__).resolve().parents[2]
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(root)}
        out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "x.png")], env=env, check=True,
                             capture_output=True, text=True)
        digests.add(out.stdout.strip())
    here = views(Image.open(tmp_path / "x.png"), "p/x.png", 2, 3, "light")
    digests.add(hashlib.sha256(b"".join(np.asarray(v).tobytes() for v in here)).hexdigest())
    assert len(digests) == 1


def test_light_never_mirrors_and_light_flip_does():
    img = _image()
    w = img.size[0]

    def left_brighter(v) -> bool:
        arr = np.asarray(v, dtype=np.float64)
        return arr[:, : w // 3].mean() > arr[:, -w // 3 :].mean()

    assert all(left_brighter(v) for v in views(img, "a", 40, 0, "light"))
    flipped = [not left_brighter(v) for v in views(img, "a", 40, 0, "light-flip")]
    assert 5 < sum(flipped) < 35  # about half of the views


def test_an_identity_preset_changes_nothing_and_each_range_is_applied():
    img = _image()
    still = Preset(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), rotation_degrees=0.0)
    assert np.array_equal(np.asarray(augment(img, still, view_generator("a", 0, 0))), np.asarray(img))
    brighter = Preset(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), rotation_degrees=0.0, brightness=0.5)
    means = [np.asarray(v, dtype=np.float64).mean() for v in views(img, "a", 8, 0, brighter)]
    assert np.ptp(means) > 5  # exposure varies between views


def test_tta_views_are_fixed_and_distinct():
    img = _image()
    first, again = tta_views(img, 4), tta_views(img, 4)
    assert len(first) == 4 and all(v.size == img.size for v in first)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, again))
    assert len({np.asarray(v).tobytes() for v in first} | {np.asarray(img).tobytes()}) == 5
    assert tta_views(img, 0) == []
    with pytest.raises(ConfigError, match=f"--tta {MAX_TTA + 1} is invalid"):
        tta_views(img, MAX_TTA + 1)


def test_bad_names_and_counts_are_one_line_errors():
    with pytest.raises(ConfigError, match="preset 'strong' is unknown; expected one of mild, light"):
        get_preset("strong")
    with pytest.raises(ConfigError, match="--views -1 is invalid"):
        views(_image(), "a", -1, 0, "light")


def test_the_fused_warp_keeps_the_properties_of_the_separate_ops():
    """One warp + one LUT per view: the size asked for, deterministic per generator, rotation/crop and
    brightness/contrast each change the pixels, no flip unless the preset says so."""
    img = _image(64, 64)
    frame = {"box": (4.0, 4.0, 60.0, 60.0), "size": (32, 32)}
    one = augment(img, "light", view_generator("a", 0, 0), **frame)
    assert one.size == (32, 32) and one.mode == "L"
    assert np.array_equal(np.asarray(one), np.asarray(augment(img, "light", view_generator("a", 0, 0), **frame)))
    plain = np.asarray(img.resize((32, 32), Image.Resampling.BILINEAR, box=frame["box"]), dtype=np.float64)
    geometric = Preset(crop_scale=(0.8, 0.8), rotation_degrees=10.0)
    moved = np.asarray(augment(img, geometric, view_generator("a", 1, 0), **frame), dtype=np.float64)
    assert np.abs(moved - plain).mean() > 2  # rotation and crop move the structure
    tone = Preset(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), rotation_degrees=0.0, brightness=0.3, contrast=0.3)
    toned = [np.asarray(augment(img, tone, view_generator("a", v, 0)), dtype=np.float64) for v in range(6)]
    arr = np.asarray(img, dtype=np.float64)
    assert np.ptp([t.mean() for t in toned]) > 3 and np.ptp([t.std() for t in toned]) > 1  # both factors applied
    assert all(np.corrcoef(t.ravel(), arr.ravel())[0, 1] > 0.99 for t in toned)  # a map of values, no geometry
    w = img.size[0]
    assert all(np.asarray(v, dtype=np.float64)[:, : w // 3].mean() > np.asarray(v, dtype=np.float64)[:, -w // 3:].mean()
               for v in views(img, "a", 20, 0, "medium"))  # never mirrored
