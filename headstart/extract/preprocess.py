"""Image -> tensor preprocessing shared by extraction and fine-tuning.

Workers do the CPU part (resize, crop) and ship uint8 tensors, 4x smaller than float, in channels-last memory
(the layout the networks run in), so neither the worker's stacking nor the device's normalisation transposes
anything; the normalisation runs on the device, in place, on the batch. Extraction and fine-tuning use the same
code, so the cached head and the on-the-fly frozen backbone see identical inputs.

Grey images (most X-rays, including JPEGs stored as RGB with three equal channels) are resized as one band and
only then spread to three: the same pixels as resizing RGB (the resampling is per band), at a third of the cost,
which is most of a decode worker's time on small JPEGs.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageChops
from torch.utils.data import default_collate, get_worker_info

from headstart.backbones.types import Preprocessing

_PIL_INTERPOLATION = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def crop_geometry(w: int, h: int, prep: Preprocessing) -> tuple[int, int, int, int]:
    """(new_w, new_h, left, top): resize the image to (new_w, new_h), then take the `input_size` square at
    (left, top); a negative offset pads with black. `prep.crop` picks the plain view:

    - center: the shorter side to `resize_size`, then the centre `input_size` (torchvision's eval recipe; at
      256 -> 224 it cuts 12.5 % off each side of the shorter axis, where the apices and costophrenic angles are);
    - full: the whole image to the square (aspect ratio not kept);
    - pad: the longer side to `input_size`, the shorter one padded evenly (letterbox: every pixel, undistorted).

    One definition for the PIL path and the on-device tensor path, so both crop the same pixels.
    """
    size = prep.input_size
    if prep.crop == "full":
        return size, size, 0, 0
    if prep.crop == "pad":
        scale = size / max(w, h)
        new_w, new_h = max(1, min(size, round(w * scale))), max(1, min(size, round(h * scale)))
        return new_w, new_h, (new_w - size) // 2, (new_h - size) // 2
    scale = prep.resize_size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    return new_w, new_h, (new_w - size) // 2, (new_h - size) // 2


def resize_center_crop(img: Image.Image, prep: Preprocessing) -> Image.Image:
    """The plain view of `img`: resize, then the `input_size` square of `crop_geometry` (PIL's crop pads a box
    reaching outside the image with black, which is the letterbox of `pad`)."""
    new_w, new_h, left, top = crop_geometry(*img.size, prep)
    if (new_w, new_h) != img.size:
        img = img.resize((new_w, new_h), _PIL_INTERPOLATION.get(prep.interpolation, Image.Resampling.BILINEAR))
    if (left, top, new_w, new_h) == (0, 0, prep.input_size, prep.input_size):
        return img
    return img.crop((left, top, left + prep.input_size, top + prep.input_size))


def grey_band(img: Image.Image) -> Image.Image | None:
    """The one band of a grey image (mode L, or RGB with three equal bands), else None. The RGB check costs
    about a tenth of the resize it saves."""
    if img.mode == "L":
        return img
    if img.mode != "RGB":
        return None
    r, g, b = img.split()
    if ImageChops.difference(r, g).getbbox() is None and ImageChops.difference(r, b).getbbox() is None:
        return r
    return None


def crop_source(img: Image.Image, prep: Preprocessing) -> Image.Image:
    """`img` in the mode its crop is taken in: the grey band of a grey image (resized as one band, spread to
    three channels at the end), else luma for a one-channel backbone or RGB."""
    band = grey_band(img)
    if band is not None:
        return band
    return img.convert("L") if prep.channels == 1 else img.convert("RGB")


def view_base(img: Image.Image, prep: Preprocessing) -> Image.Image:
    """The image `prep`'s plain view and augmented views are derived from: `crop_source(img)`, resized as the
    plain view resizes it when that makes it smaller (a draft-decoded film is up to twice the resize on each
    side: augmenting those pixels costs up to 4x and the crop throws them away), else as decoded (upscaling
    first would only add pixels to rotate and crop). The plain view of the base is the plain view of `img`."""
    src = crop_source(img, prep)
    new_w, new_h, _, _ = crop_geometry(*src.size, prep)
    if new_w * new_h >= src.size[0] * src.size[1]:
        return src
    return src.resize((new_w, new_h), _PIL_INTERPOLATION.get(prep.interpolation, Image.Resampling.BILINEAR))


def plain_frame(img: Image.Image, prep: Preprocessing) -> dict:
    """The region of `img` its plain view resamples, as `box` and `size` for `data.augment` (the resize of
    `crop_geometry`, then its crop; the box reaches outside the image where `pad` letterboxes): a view warped
    straight into it is the plain view of the whole warped view, in one pass."""
    w, h = img.size
    new_w, new_h, left, top = crop_geometry(w, h, prep)
    sx, sy, size = w / new_w, h / new_h, prep.input_size
    return {"box": (left * sx, top * sy, (left + size) * sx, (top + size) * sy), "size": (size, size)}


def to_uint8_tensor(img: Image.Image, prep: Preprocessing) -> torch.Tensor:
    """PIL image -> (C, input_size, input_size) uint8 tensor, channels-last in memory (see the module notes).

    C is `prep.channels`: 3 (RGB) or 1, the grayscale plane a torchxrayvision model reads. A grey original gives
    its own band (never three equal channels averaged back); a colour image its luma (`convert("L")`).
    """
    return crop_tensor(resize_center_crop(crop_source(img, prep), prep), prep)


def crop_tensor(crop: Image.Image, prep: Preprocessing) -> torch.Tensor:
    """An `input_size` square already in `crop_source`'s mode (one band or RGB) -> (C, S, S) uint8 tensor,
    channels-last in memory: a writable copy, one band spread to the backbone's channels, or the RGB pixels."""
    arr = np.asarray(crop, dtype=np.uint8)
    arr = np.repeat(arr[:, :, None], prep.channels, axis=2) if arr.ndim == 2 else arr.copy()
    return torch.from_numpy(arr).permute(2, 0, 1)


def augmented_tensor(img: Image.Image, prep: Preprocessing, preset, generator: torch.Generator) -> torch.Tensor:
    """One random view of `img` (`data.augment.augment`) in `prep`'s plain geometry, as `to_uint8_tensor` gives
    the plain view: drawn on `view_base(img)` and warped straight into the plain crop, as extraction's views
    are, so a fine-tune and a cached head see the same augmentation."""
    from headstart.data.augment import augment

    base = view_base(img, prep)
    return crop_tensor(augment(base, preset, generator, **plain_frame(base, prep)), prep)


def stack_channels_last(images: list[torch.Tensor]) -> torch.Tensor:
    """(C, S, S) uint8 crops -> (B, C, S, S) channels-last: a plain copy of each HWC crop, no transpose.

    In a DataLoader worker `default_collate` writes the batch straight into shared memory. In the main process
    (threaded decode) numpy copies it on one thread: torch's parallel copy waits on its other threads, and with
    a core taken by anything else it took 1.5 s for 230 views that numpy stacks in 15 ms (2-core machine)."""
    hwc = [t.permute(1, 2, 0) for t in images]
    if get_worker_info() is not None:
        return default_collate(hwc).permute(0, 3, 1, 2)
    return torch.from_numpy(np.stack([t.numpy() for t in hwc])).permute(0, 3, 1, 2)


def normalize_batch(batch: torch.Tensor, prep: Preprocessing, *, device: torch.device | str,
                    channels_last: bool = True) -> torch.Tensor:
    """(B, C, H, W) uint8 -> normalised float32 on `device`, channels_last (1.5-2x faster convs in torch on CPU).

    The layout change happens on the uint8 tensor (a no-op for the loaders' channels-last batches) and the
    arithmetic in place, so the float batch is written once and read twice, not copied three times.
    `channels_last=False` gives a contiguous NCHW batch instead (onnxruntime's layout: it would copy otherwise)."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = batch.to(device, non_blocking=True).contiguous(memory_format=layout).float()
    shape = (1, len(prep.mean), 1, 1)  # one value per channel: (1, 3, 1, 1), or (1, 1, 1, 1) for grayscale
    mean = torch.tensor(prep.mean, device=x.device).view(shape) * 255.0
    std = torch.tensor(prep.std, device=x.device).view(shape) * 255.0
    return x.sub_(mean).div_(std)
