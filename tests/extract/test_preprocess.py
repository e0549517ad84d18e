"""The fast preprocessing paths give exactly the pixels and inputs of the plain ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from headstart.backbones.types import Preprocessing
from headstart.extract.preprocess import normalize_batch, resize_center_crop, stack_channels_last, to_uint8_tensor


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
