"""The fast preprocessing paths give exactly the pixels and inputs of the plain ones."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from headstart.backbones.types import Preprocessing
from headstart.extract.preprocess import (crop_geometry, normalize_batch, resize_center_crop, stack_channels_last,
                                         to_uint8_tensor, view_base)


def _prep(interpolation: str, input_size: int = 24, resize_size: int = 28) -> Preprocessing:
    return Preprocessing(input_size=input_size, resize_size=resize_size, mean=(0.485, 0.456, 0.406),
                         std=(0.229, 0.224, 0.225), interpolation=interpolation)


def _plain(img: Image.Image, prep: Preprocessing) -> torch.Tensor:
    """The reference: convert to RGB, resize and crop all three bands, (3, S, S)."""
    return torch.from_numpy(np.array(resize_center_crop(img.convert("RGB"), prep))).permute(2, 0, 1)


def _images(rng: np.random.Generator) -> list[Image.Image]:
    grey = (rng.random((37, 53)) * 255).astype(np.uint8)
    colour = (rng.random((41, 30, 3)) * 255).astype(np.uint8)
    return [
        Image.fromarray(grey, mode="L"),
        Image.fromarray(grey, mode="L").convert("RGB"),  # a grey image stored as RGB (the Kaggle 224-px files)
        Image.fromarray(colour, mode="RGB"),
        Image.fromarray(grey[:24, :24], mode="L"),  # already the crop size: no resize
    ]


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "lanczos", "nearest"])
def test_grey_band_path_gives_the_plain_pixels(interpolation):
    prep = _prep(interpolation)
    for img in _images(np.random.default_rng(0)):
        fast = to_uint8_tensor(img, prep)
        assert fast.shape == (3, 24, 24) and fast.dtype == torch.uint8
        assert torch.equal(fast, _plain(img, prep)), img.mode


@pytest.mark.parametrize("crop", ["center", "full", "pad"])
@pytest.mark.parametrize("channels", [3, 1])
def test_the_view_base_is_the_smaller_of_decode_and_resize_and_keeps_the_plain_pixels(crop, channels):
    """Views are drawn on `view_base`: the plain view taken from it is the plain view of the decode itself."""
    prep = replace(_prep("bilinear", input_size=12, resize_size=14), crop=crop, channels=channels,
                   mean=(0.5,) * channels, std=(0.25,) * channels)
    shrunk = 0
    for img in _images(np.random.default_rng(3)):
        base = view_base(img, prep)
        new_w, new_h, _, _ = crop_geometry(*img.size, prep)
        assert base.mode == "L" or (channels == 3 and img.mode == "RGB")
        assert base.size in (img.size, (new_w, new_h)) and base.size[0] * base.size[1] <= img.size[0] * img.size[1]
        shrunk += base.size != img.size
        assert torch.equal(to_uint8_tensor(base, prep), to_uint8_tensor(img, prep)), (img.mode, img.size)
    assert shrunk == len(_images(np.random.default_rng(3)))  # every test image is larger than 14 px


def test_nearly_grey_rgb_is_not_taken_for_grey():
    arr = np.repeat((np.random.default_rng(1).random((30, 30, 1)) * 200).astype(np.uint8), 3, axis=2)
    arr[7, 9, 2] += 1  # one blue value differs
    img = Image.fromarray(arr, mode="RGB")
    prep = _prep("bilinear")
    assert torch.equal(to_uint8_tensor(img, prep), _plain(img, prep))


def test_crops_stack_channels_last_and_normalise_like_the_formula():
    prep = _prep("bilinear")
    crops = [to_uint8_tensor(img, prep) for img in _images(np.random.default_rng(2))]
    batch = stack_channels_last(crops)
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(batch, torch.stack(crops))
    mean = torch.tensor(prep.mean).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(prep.std).view(1, 3, 1, 1) * 255.0
    expected = (torch.stack(crops).float() - mean) / std
    for given in (batch, torch.stack(crops)):  # channels-last from the loader, or a plain NCHW batch
        x = normalize_batch(given, prep, device="cpu")
        assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(x, expected)


def _wide() -> Image.Image:
    """53 x 37, grey, never black, so a letterbox's bars are the only zero rows."""
    return Image.fromarray((np.random.default_rng(1).random((37, 53)) * 200 + 40).astype(np.uint8), mode="L")


def test_each_crop_mode_gives_the_input_square_with_its_own_geometry():
    img = _wide()
    out = {crop: to_uint8_tensor(img, replace(_prep("bilinear"), crop=crop)) for crop in ("center", "full", "pad")}
    assert all(t.shape == (3, 24, 24) and t.dtype == torch.uint8 for t in out.values())
    # full: the whole image squashed to the square, nothing cut, nothing added
    squashed = np.asarray(img.resize((24, 24), Image.Resampling.BILINEAR))
    assert np.array_equal(out["full"][0].numpy(), squashed)
    # pad: the longer side fills the square, the shorter one is centred between black bars (37*24/53 -> 17 rows)
    black_rows = (out["pad"][0] == 0).all(dim=1).numpy()
    assert black_rows.sum() == 24 - 17 and black_rows[:3].all() and black_rows[-3:].all()
    assert not (out["pad"][0] == 0).all(dim=0).any()  # no black column: the width is all image
    # center: the middle of the shorter-side-to-28 resize; no black at all
    assert not (out["center"] == 0).all(dim=1).any()
    assert len({t.numpy().tobytes() for t in out.values()}) == 3


@pytest.mark.parametrize("crop", ["center", "full", "pad"])
def test_the_device_path_crops_the_same_pixels(crop):
    from headstart.extract.device_decode import resize_center_crop_tensor

    img, prep = _wide(), replace(_prep("bilinear"), crop=crop)
    pil = torch.from_numpy(np.array(resize_center_crop(img, prep)))
    tensor = resize_center_crop_tensor(torch.from_numpy(np.array(img))[None, None], prep)[0, 0]
    assert tensor.shape == pil.shape == (24, 24)
    assert torch.equal(tensor == 0, pil == 0)  # the same black bars (pad) in the same place
    assert (tensor.int() - pil.int()).abs().max() <= 2  # resampling kernels differ a little from PIL's


def test_an_unknown_crop_is_refused_and_center_is_not_recorded():
    from headstart.errors import ConfigError

    with pytest.raises(ConfigError, match="--crop 'square' is invalid; expected one of center, full, pad"):
        Preprocessing(crop="square")
    assert "crop" not in Preprocessing().to_dict()  # old fingerprints stay valid
    assert Preprocessing().with_crop("pad").to_dict()["crop"] == "pad"
