"""The device decoder's perceptual hash equals `imagemeta.perceptual_hash` bit for bit on the same pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from headstart.data.imagemeta import perceptual_hash
from headstart.extract.device_hash import box_coefficients, device_hashes


@pytest.mark.parametrize("size", [(224, 224), (202, 202), (367, 278), (32, 32), (31, 45), (1000, 777)])
def test_same_hash_as_pil_on_the_same_pixels(size):
    h, w = size
    rng = np.random.default_rng(h * w)
    ramp = np.linspace(0, 200, w)[None, None, :, None]  # structure plus noise, so many bits sit near the median
    arr = (0.8 * ramp + 0.2 * rng.integers(0, 256, (3, h, w, 3))).astype(np.uint8)
    images = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
    assert device_hashes(images) == [perceptual_hash(Image.fromarray(a)) for a in arr]


def test_box_weights_are_pils_fixed_point_weights():
    k = box_coefficients(224)
    assert k.shape == (32, 224) and np.count_nonzero(k, axis=1).tolist() == [7] * 32
    assert np.all(np.abs(k.sum(axis=1) - 2**22) <= 7)  # each row sums to one in 22-bit fixed point
    assert device_hashes(torch.zeros(0, 3, 8, 8, dtype=torch.uint8)) == []
