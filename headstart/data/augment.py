"""Augmentation for radiographs: named presets, seeded random views and deterministic test-time views.

One module serves fine-tuning (a fresh view per sample and epoch) and extraction (K cached views per training
image, M fixed test-time views). A view is drawn on one decoded image at its own size; the plain view's geometry
(`extract.preprocess`: `--crop center|full|pad`) then applies to it, so an augmented view differs from the plain
one by the jitter alone.

A view costs two passes over the pixels, whatever the preset: the rotation, the random resized crop, the flip
and the plain view's resize and crop are one affine map, applied as one bilinear warp (PIL's `transform`, or
`grid_sample` on a tensor); brightness and contrast are one map of pixel values (a lookup table on a PIL
image). Version 1 ran them as torchvision ops, one pass each, then resized and cropped: 1.4x the CPU time, for
pixels that differ by interpolation rounding and by the contrast pivot (now the mean of the output crop).
Every warp here enlarges or keeps the scale (the crop is resized up to the image's size, and extraction draws
views on `extract.preprocess.view_base`, already at the plain view's scale), so bilinear needs no antialias.

The random parameters are drawn here from a `torch.Generator` (torch imported on first use, so the CLI can
offer the preset names without loading it), never from the global RNG or a worker's stream: a view is a pure
function of (image, preset, generator). `view_generator(image_id, view, seed)` seeds it from a sha256 of the
three (never Python's salted `hash()`), so view k of an image is the same pixels after a resume, on any rank,
under any engine.

Presets ("aspect" is the crop's aspect relative to the image's own, i.e. the stretch once it is resized back; no
horizontal flip unless the name says so: on a chest film the heart is on the patient's left, and a
mirrored film is not a plausible sample):
- `mild`: crop scale 0.85-1, aspect 0.9-1.1, rotation +-7 degrees. The fine-tune default since the first
  round: positioning tilt and framing seen in practice, nothing else.
- `light`: crop scale 0.8-1, aspect 0.9-1.1, rotation +-10 degrees, brightness and contrast +-10 %. Adds the
  exposure spread between machines and technicians; a crop keeping >= 80 % of the area keeps both lungs,
  apices and costophrenic angles in most films.
- `medium`: crop scale 0.6-1, aspect 0.8-1.25, rotation +-15 degrees, brightness and contrast +-20 %. For
  very small training sets, where regularisation matters more than keeping every border finding in view.
- `light-flip`: `light` plus a horizontal flip half of the time; an explicit choice for tasks that do not
  depend on laterality (it teaches the model to ignore the side of the heart and of lesions).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, TypeVar

from headstart.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import torch

Image = TypeVar("Image")  # a PIL image or a (..., C, H, W) tensor: every view returns the type it was given
# (x0, y0, x1, y1): a region of a view in its continuous pixel coordinates (pixel i spans [i, i+1)), resampled
# over the output; it may reach outside the view (black there, as PIL's crop pads)
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Preset:
    """The ranges a random view is drawn from. Every view keeps the image's size (see the module notes)."""

    crop_scale: tuple[float, float] = (0.8, 1.0)  # fraction of the area a random resized crop keeps
    crop_ratio: tuple[float, float] = (0.9, 1.1)  # its aspect jitter relative to the image's (1: undistorted)
    rotation_degrees: float = 10.0  # uniform in +-this: patient positioning tilt
    brightness: float = 0.0  # factor uniform in 1 +- this (exposure)
    contrast: float = 0.0  # factor uniform in 1 +- this (windowing, detector)
    hflip: bool = False  # mirror half of the views; never on by default (laterality, see the module notes)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


PRESETS: dict[str, Preset] = {
    "mild": Preset(crop_scale=(0.85, 1.0), rotation_degrees=7.0),
    "light": Preset(crop_scale=(0.8, 1.0), rotation_degrees=10.0, brightness=0.1, contrast=0.1),
    "medium": Preset(crop_scale=(0.6, 1.0), crop_ratio=(0.8, 1.25), rotation_degrees=15.0, brightness=0.2,
                     contrast=0.2),
}
PRESETS["light-flip"] = replace(PRESETS["light"], hflip=True)

# Test-time views: (side fraction, x anchor, y anchor) of a fixed crop, resized back to the image's size. The
# plain view is the centre crop itself, so these are the extra views: a zoom, then the four corners, then deeper.
TTA_CROPS: tuple[tuple[float, float, float], ...] = (
    (0.9, 0.5, 0.5), (0.9, 0.0, 0.0), (0.9, 1.0, 0.0), (0.9, 0.0, 1.0), (0.9, 1.0, 1.0),
    (0.8, 0.5, 0.5), (0.8, 0.0, 0.0), (0.8, 1.0, 0.0), (0.8, 0.0, 1.0), (0.8, 1.0, 1.0),
)
MAX_TTA = len(TTA_CROPS)


def get_preset(preset: str | Preset) -> Preset:
    """A preset by name (or itself); ConfigError naming the presets otherwise."""
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise ConfigError(f"augmentation preset {preset!r} is unknown; expected one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def view_seed(image_id: str, view: int, seed: int) -> int:
    """A 63-bit seed from (image id, view index, seed): stable across processes, machines and Python runs."""
    digest = hashlib.sha256(f"{int(seed)}\x1f{int(view)}\x1f{image_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def view_generator(image_id: str, view: int, seed: int) -> torch.Generator:
    """The generator that draws view `view` of image `image_id` (see `view_seed`)."""
    import torch

    return torch.Generator().manual_seed(view_seed(image_id, view, seed))


def augment(image: Image, preset: str | Preset, generator: torch.Generator, *, box: Box | None = None,
            size: tuple[int, int] | None = None) -> Image:
    """One random view of `image`: rotation, random resized crop and flip as one affine warp, then brightness and
    contrast as one map of pixel values (a lookup table on a PIL image).

    The draws come from `generator` only, in a fixed order (angle, crop box, brightness, contrast, flip), so the
    same generator state gives the same pixels. The rotation is about the image's centre and comes before the
    crop, so the crop trims some of the black corners it leaves. `box` and `size` (see `Box`) resample one region
    of the view at another size instead of returning the whole view at the image's own: extraction and
    fine-tuning pass the plain view's region (`extract.preprocess.plain_frame`), so a view and its plain crop are
    one warp.
    """
    p = get_preset(preset)
    h, w = _size(image)
    angle = _uniform(generator, -p.rotation_degrees, p.rotation_degrees)
    top, left, ch, cw = _crop_box(h, w, p.crop_scale, p.crop_ratio, generator)
    bright = _uniform(generator, 1 - p.brightness, 1 + p.brightness)
    contrast = _uniform(generator, 1 - p.contrast, 1 + p.contrast)
    import torch

    flip = bool(torch.rand((), generator=generator) < 0.5) and p.hflip
    matrix = _rotation(angle, w, h) @ _affine(cw / w, ch / h, left, top)  # view -> image
    if flip:
        matrix = matrix @ _affine(-1.0, 1.0, w, 0.0)
    out = size or (w, h)
    image = _warp(image, matrix @ _frame(box, out), out)
    return _tone(image, bright if p.brightness > 0 else 1.0, contrast if p.contrast > 0 else 1.0)


def views(image: Image, image_id: str, k: int, seed: int, preset: str | Preset, *, box: Box | None = None,
          size: tuple[int, int] | None = None) -> list[Image]:
    """K random views of one decoded image; view v is `augment(image, preset, view_generator(image_id, v, seed))`
    (with `box` and `size`, see `augment`).

    Extraction decodes an image once and calls this on it; the result depends on (image, id, view, seed,
    preset) only, never on the batch, worker, rank or resume point.
    """
    if k < 0:
        raise ConfigError(f"--views {k} is invalid; expected 0 or more augmented views per image")
    p = get_preset(preset)
    return [augment(image, p, view_generator(image_id, v, seed), box=box, size=size) for v in range(k)]


def tta_views(image: Image, m: int, *, box: Box | None = None, size: tuple[int, int] | None = None) -> list[Image]:
    """M deterministic test-time views (`TTA_CROPS`): fixed crops resized back to the image's size (or, with
    `box` and `size`, that region of each; one warp per view either way)."""
    if not 0 <= m <= MAX_TTA:
        raise ConfigError(f"--tta {m} is invalid; expected 0 to {MAX_TTA} test-time views")
    h, w = _size(image)
    out = size or (w, h)
    frame = _frame(box, out)
    views = []
    for side, ax, ay in TTA_CROPS[:m]:
        ch, cw = max(1, round(h * side)), max(1, round(w * side))
        top, left = round((h - ch) * ay), round((w - cw) * ax)
        views.append(_warp(image, _affine(cw / w, ch / h, left, top) @ frame, out))
    return views


def _size(image) -> tuple[int, int]:
    """(height, width) of a PIL image or a (..., H, W) tensor."""
    if _is_tensor(image):
        return int(image.shape[-2]), int(image.shape[-1])
    w, h = image.size
    return int(h), int(w)


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    import torch

    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _crop_box(h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float],
              generator: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, height, width): torchvision's RandomResizedCrop sampling, drawn from `generator`, except that
    the aspect ratio is relative to the image's own: the crop is resized back to the image's size, so `ratio`
    is exactly the distortion (1 = none), on a 1.2:1 film as on a square one."""
    import torch

    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(generator, *scale)
        aspect = (w / h) * math.exp(_uniform(generator, *log_ratio))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (), generator=generator))
            left = int(torch.randint(0, w - cw + 1, (), generator=generator))
            return top, left, ch, cw
    return 0, 0, h, w  # nothing fitted in 10 draws (torchvision's fallback is a centre crop): the whole image


def _affine(sx: float, sy: float, tx: float, ty: float) -> np.ndarray:
    """The 3 x 3 map (x, y) -> (sx * x + tx, sy * y + ty), in continuous pixel coordinates (pixel i spans [i, i+1),
    PIL's convention for `resize` and `transform`)."""
    import numpy as np

    return np.array([[sx, 0.0, tx], [0.0, sy, ty], [0.0, 0.0, 1.0]])


def _rotation(angle: float, w: int, h: int) -> np.ndarray:
    """The map from a view rotated by `angle` degrees (counter-clockwise, about the centre: PIL's `rotate`) back
    to the image."""
    import numpy as np

    a = math.radians(angle)
    cos, sin = math.cos(a), math.sin(a)
    cx, cy = w / 2, h / 2
    return np.array([[cos, -sin, cx - cos * cx + sin * cy], [sin, cos, cy - sin * cx - cos * cy], [0.0, 0.0, 1.0]])


def _frame(box: Box | None, size: tuple[int, int]) -> np.ndarray:
    """The map from the output's pixels to the view's: `box` of the view stretched over `size` (None: all of it)."""
    import numpy as np

    if box is None:
        return np.eye(3)
    x0, y0, x1, y1 = box
    return _affine((x1 - x0) / size[0], (y1 - y0) / size[1], x0, y0)


def _warp(image, matrix: np.ndarray, size: tuple[int, int]):
    """`image` resampled (bilinear, black outside) at `size`: output point p reads the image at `matrix @ p`. The
    identity is no resampling at all."""
    import numpy as np

    if size == _size(image)[::-1] and np.allclose(matrix, np.eye(3), rtol=0.0, atol=1e-9):
        return image
    if not _is_tensor(image):
        from PIL import Image as PILImage

        (sx, b, tx), (d, sy, ty) = matrix[:2]
        box = (tx, ty, tx + sx * size[0], ty + sy * size[1])
        h, w = _size(image)
        if b == d == 0 and sx > 0 and sy > 0 and box[0] >= 0 and box[1] >= 0 and box[2] <= w and box[3] <= h:
            # no rotation or flip, inside the image (test-time views): PIL's resize of a box is 2.5x faster
            return image.resize(size, PILImage.Resampling.BILINEAR, box=box)
        return image.transform(size, PILImage.Transform.AFFINE, tuple(matrix[:2].ravel()),
                               PILImage.Resampling.BILINEAR)
    import torch

    h, w = _size(image)
    ys, xs = np.meshgrid(np.arange(size[1]) + 0.5, np.arange(size[0]) + 0.5, indexing="ij")
    src = np.tensordot(matrix[:2], np.stack([xs, ys, np.ones_like(xs)]), axes=1)  # (2, H', W') image points
    grid = torch.from_numpy(np.stack([2 * src[0] / w - 1, 2 * src[1] / h - 1], axis=-1)).float()
    flat = image.reshape(-1, *image.shape[-3:])
    out = torch.nn.functional.grid_sample(flat.float(), grid.expand(len(flat), -1, -1, -1), mode="bilinear",
                                          padding_mode="zeros", align_corners=False)
    return _like(out, image).reshape(*image.shape[:-2], size[1], size[0])


def _tone(image, brightness: float, contrast: float):
    """Brightness then contrast in one pass: v -> c * (b * v - m) + m, clipped, where m is the mean of the
    brightened view (the contrast pivot, as torchvision's `adjust_contrast`, over all channels). On a PIL image
    it is a 256-entry lookup table per band (m from the histogram: no pass over the pixels but the table's)."""
    import numpy as np

    if brightness == 1.0 and contrast == 1.0:
        return image
    if _is_tensor(image):
        bound = 1.0 if image.is_floating_point() else 255.0
        x = (image.float() * brightness).clamp_(0, bound)
        pivot = x.mean(dim=(-3, -2, -1), keepdim=True)
        return _like(x.sub_(pivot).mul_(contrast).add_(pivot), image)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    bands = len(image.getbands())
    hist = np.asarray(image.histogram(), dtype=np.float64)
    lifted = np.tile(np.clip(np.arange(256) * brightness, 0, 255), bands)
    pivot = float(hist @ lifted) / max(float(hist.sum()), 1.0)
    return image.point(np.clip(np.rint(contrast * (lifted - pivot) + pivot), 0, 255).astype(np.uint8).tolist())


def _like(x, image):
    """Float tensor `x` in `image`'s dtype (rounded and clipped for integers)."""
    if image.is_floating_point():
        return x.clamp_(0, 1).to(image.dtype)
    return x.round_().clamp_(0, 255).to(image.dtype)


def _is_tensor(image) -> bool:
    return not hasattr(image, "getbands")
