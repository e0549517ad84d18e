"""Augmentation for radiographs: named presets, seeded random views and deterministic test-time views.

One module serves fine-tuning (a fresh view per sample and epoch) and extraction (K cached views per training
image, M fixed test-time views). Every view works on one decoded image at its own size and returns an image of
that size; the plain view's geometry (`extract.preprocess`: `--crop center|full|pad`) then runs on it, so an
augmented view differs from the plain one by the jitter alone.

The operations are `torchvision.transforms.v2.functional` (PIL images and tensors alike), imported on first use
so the CLI can offer the preset names without loading torch. Their random parameters
are drawn here from a `torch.Generator`, never from the global RNG or a worker's stream: a view is a pure function
of (image, preset, generator). `view_generator(image_id, view, seed)` seeds it from a sha256 of the three (never
Python's salted `hash()`), so view k of an image is the same pixels after a resume, on any rank, under any engine.

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
    import torch

Image = TypeVar("Image")  # a PIL image or a (..., C, H, W) tensor: every view returns the type it was given


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


def augment(image: Image, preset: str | Preset, generator: torch.Generator) -> Image:
    """One random view of `image` at its own size: rotate, random resized crop, brightness/contrast, flip.

    Rotation comes first so the crop trims some of the black corners it leaves. Draws come from `generator`
    only, in a fixed order, so the same generator state gives the same pixels.
    """
    import torch
    from torchvision.transforms.v2 import InterpolationMode, functional as F

    p = get_preset(preset)
    h, w = _size(image)
    angle = _uniform(generator, -p.rotation_degrees, p.rotation_degrees)
    top, left, ch, cw = _crop_box(h, w, p.crop_scale, p.crop_ratio, generator)
    bright = _uniform(generator, 1 - p.brightness, 1 + p.brightness)
    contrast = _uniform(generator, 1 - p.contrast, 1 + p.contrast)
    flip = bool(torch.rand((), generator=generator) < 0.5)
    if p.rotation_degrees > 0:
        image = F.rotate(image, angle, interpolation=InterpolationMode.BILINEAR)
    if (top, left, ch, cw) != (0, 0, h, w):
        image = F.resized_crop(image, top, left, ch, cw, [h, w], interpolation=InterpolationMode.BILINEAR,
                               antialias=True)
    if p.brightness > 0:
        image = F.adjust_brightness(image, bright)
    if p.contrast > 0:
        image = F.adjust_contrast(image, contrast)
    if p.hflip and flip:
        image = F.horizontal_flip(image)
    return image


def views(image: Image, image_id: str, k: int, seed: int, preset: str | Preset) -> list[Image]:
    """K random views of one decoded image; view v is `augment(image, preset, view_generator(image_id, v, seed))`.

    Extraction decodes an image once and calls this on it; the result depends on (image, id, view, seed,
    preset) only, never on the batch, worker, rank or resume point.
    """
    if k < 0:
        raise ConfigError(f"--views {k} is invalid; expected 0 or more augmented views per image")
    p = get_preset(preset)
    return [augment(image, p, view_generator(image_id, v, seed)) for v in range(k)]


def tta_views(image: Image, m: int) -> list[Image]:
    """M deterministic test-time views (`TTA_CROPS`): fixed crops resized back to the image's size."""
    if not 0 <= m <= MAX_TTA:
        raise ConfigError(f"--tta {m} is invalid; expected 0 to {MAX_TTA} test-time views")
    from torchvision.transforms.v2 import InterpolationMode, functional as F

    h, w = _size(image)
    out = []
    for side, ax, ay in TTA_CROPS[:m]:
        ch, cw = max(1, round(h * side)), max(1, round(w * side))
        top, left = round((h - ch) * ay), round((w - cw) * ax)
        out.append(F.resized_crop(image, top, left, ch, cw, [h, w], interpolation=InterpolationMode.BILINEAR,
                                  antialias=True))
    return out


def _size(image) -> tuple[int, int]:
    from torchvision.transforms.v2 import functional as F

    h, w = F.get_size(image)
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
