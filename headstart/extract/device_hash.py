"""Perceptual hashes of images decoded on the device (`--decode device`), equal to `imagemeta.perceptual_hash`.

The device path never hands a PIL image to the CPU, so the hash is computed where the pixels are: PIL's grey
conversion and its BOX reduction to 32 x 32 are replayed exactly (the same fixed-point coefficients and the same
rounding, horizontal pass first) as two small matrix products per image size, and only the 32 x 32 result is
copied back for the DCT. On the same pixels the hash is therefore bit-identical to the CPU path's; the pixels
themselves differ slightly (nvJPEG vs libjpeg, and no draft decode), which moves a hash by a bit or two at most.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from headstart.data.imagemeta import HASH_INPUT, hash_of_reduced

_PRECISION_BITS = 32 - 8 - 2  # PIL's fixed-point precision for 8-bit resampling (Resample.c)
_HALF = float(1 << (_PRECISION_BITS - 1))
_ONE = float(1 << _PRECISION_BITS)


@lru_cache(maxsize=64)
def box_coefficients(in_size: int, out_size: int = HASH_INPUT) -> np.ndarray:
    """(out_size, in_size) fixed-point BOX weights exactly as PIL's `precompute_coeffs` + `normalize_coeffs_8bpc`:
    pixel x counts for output i when its centre lies in output i's box; the weights are normalised, scaled by
    2**22 and rounded to integers (kept as float64, which holds the products exactly)."""
    scale = in_size / out_size
    support = 0.5 * max(scale, 1.0)
    ss = 1.0 / max(scale, 1.0)
    out = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), in_size)
        x = np.arange(lo, hi)
        t = (x - center + 0.5) * ss
        w = ((t > -0.5) & (t <= 0.5)).astype(np.float64)
        if w.sum():
            w /= w.sum()
        out[i, lo:hi] = np.floor(0.5 + w * _ONE)
    return out


def device_hashes(images: torch.Tensor) -> list[int]:
    """64-bit hashes of (N, 3, h, w) uint8 RGB images (or (N, 1, h, w) grey planes) of one size, on their device."""
    if images.shape[0] == 0:
        return []
    h, w = images.shape[-2:]
    rgb = images.to(torch.int32)
    if rgb.shape[1] == 1:  # already the grey plane (a GRAY-mode decode)
        gray = rgb[:, 0].to(torch.float64)
    else:  # PIL's RGB -> L: (R*19595 + G*38470 + B*7471 + 0x8000) >> 16
        gray = ((rgb[:, 0] * 19595 + rgb[:, 1] * 38470 + rgb[:, 2] * 7471 + 0x8000) >> 16).to(torch.float64)
    kw = torch.from_numpy(box_coefficients(int(w))).to(images.device)
    kh = torch.from_numpy(box_coefficients(int(h))).to(images.device)
    wide = _round_pass(gray @ kw.T)  # (N, h, 32): PIL resizes horizontally first, into 8-bit pixels
    small = _round_pass(kh @ wide)  # (N, 32, 32)
    return [hash_of_reduced(g) for g in small.cpu().numpy()]


def _round_pass(acc: torch.Tensor) -> torch.Tensor:
    """One pass's fixed-point rounding and clipping to 8 bits: clip8((acc + 2**21) >> 22)."""
    return torch.floor((acc + _HALF) / _ONE).clamp_(0, 255)
