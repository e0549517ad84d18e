"""Synthetic chest-X-ray-like phantoms: the demo data set and the tests' data, generated in about a second.

Real data cannot ship with the package, and tests must run offline, so we draw phantoms that keep the
properties a tool for the Kaggle pneumonia set has to handle: grayscale JPEGs in the train/val/test layout,
a 16-image val split, a 1 : 2.9 class imbalance, several images per patient named the Kaggle way, and a stray
`.DS_Store`. PNEUMONIA differs from NORMAL by large, bright, blurry opacities inside the dark lung fields,
strong enough that pooled features of a randomly initialised CNN separate the classes.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("NORMAL", "PNEUMONIA")
PNEUMONIA_SHARE = 2.9 / 3.9  # Kaggle train: 1,341 NORMAL / 3,875 PNEUMONIA


@dataclass(frozen=True)
class Anatomy:
    """What stays fixed across one patient's images, so repeat images are near-duplicates (like real ones)."""

    lung_width: float
    lung_height: float
    center_x: float
    center_y: float
    rib_phase: float
    brightness: float


def random_anatomy(rng: np.random.Generator) -> Anatomy:
    return Anatomy(
        lung_width=rng.uniform(0.24, 0.32),
        lung_height=rng.uniform(0.48, 0.6),
        center_x=rng.uniform(-0.05, 0.05),
        center_y=rng.uniform(-0.08, 0.02),
        rib_phase=rng.uniform(0, 2 * np.pi),
        brightness=rng.uniform(0.85, 1.15),
    )


def render_phantom(rng: np.random.Generator, *, size: int, pneumonia: bool, anatomy: Anatomy) -> np.ndarray:
    """One (size, size) uint8 frontal chest phantom."""
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    jitter = rng.normal(0, 0.02, size=2)
    x, y = xx - anatomy.center_x - jitter[0], yy - anatomy.center_y - jitter[1]
    img = np.full((size, size), 20.0)
    img += 130 * _soft_ellipse(x, y - 0.05, 0.85, 0.95, size)  # body
    lungs = sum(_soft_ellipse(x - side * 0.38, y, anatomy.lung_width, anatomy.lung_height, size) for side in (-1, 1))
    ribs = np.clip(np.sin(y * 14 + anatomy.rib_phase + 3 * x**2), 0, None) ** 4
    img += lungs * (-95 + 22 * ribs)  # dark lung fields crossed by faint ribs
    img += 55 * np.exp(-(x / 0.09) ** 2) * (y > -0.7)  # spine and mediastinum
    if pneumonia:
        for _ in range(rng.integers(1, 4)):
            side = rng.choice((-1, 1))
            cx = side * 0.38 + rng.uniform(-0.12, 0.12)
            cy = rng.uniform(-0.3, 0.35)
            sigma = rng.uniform(0.1, 0.22)
            blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
            img += rng.uniform(30, 110) * blob * np.clip(lungs * 1.3, 0, 1)  # opacity confined to the lung
    img = img * anatomy.brightness + rng.normal(0, 6, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _soft_ellipse(x: np.ndarray, y: np.ndarray, rx: float, ry: float, size: int) -> np.ndarray:
    """1 inside, 0 outside, with an edge about two pixels wide so shapes do not alias at 32 px."""
    r = np.sqrt((x / rx) ** 2 + (y / ry) ** 2)
    return 1.0 / (1.0 + np.exp((r - 1.0) * size / 4.0))


def make_phantom_dataset(
    root: str | Path, *, n_train: int = 120, n_test: int = 40, image_size: int = 64, seed: int = 0, val: int = 16
) -> Path:
    """Write the Kaggle layout `root/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg` and return `root`.

    `val` images in total go to val/ (the Kaggle set has 16, below the 50-image minimum, so the carve-out path
    runs); `val=0` leaves out the folder. Patients never span splits.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    names = _PatientNames(rng)
    for split, n in (("train", n_train), ("val", val), ("test", n_test)):
        if n <= 0:
            continue
        n_pneumonia = round(n * PNEUMONIA_SHARE) if split != "val" else n // 2  # Kaggle val is 8 / 8
        for label, count in enumerate((n - n_pneumonia, n_pneumonia)):
            folder = root / split / CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            for name, anatomy in names.take(count, pneumonia=bool(label)):
                pixels = render_phantom(rng, size=image_size, pneumonia=bool(label), anatomy=anatomy)
                Image.fromarray(pixels, mode="L").save(folder / name, quality=90)
    (root / "train" / "NORMAL" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
    return root


class _PatientNames:
    """Kaggle-style file names: IM-0115-0001.jpeg / NORMAL2-IM-1427-0001.jpeg and person12_bacteria_3.jpeg."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.next_patient = 115
        self.counters = {"bacteria": 0, "virus": 0}

    def take(self, count: int, *, pneumonia: bool) -> list[tuple[str, Anatomy]]:
        out: list[tuple[str, Anatomy]] = []
        while len(out) < count:
            self.next_patient += int(self.rng.integers(1, 4))
            pid, anatomy = self.next_patient, random_anatomy(self.rng)
            n_images = min(count - len(out), int(self.rng.choice((1, 1, 2, 3))))
            for k in range(1, n_images + 1):
                if pneumonia:
                    kind = "bacteria" if self.rng.random() < 0.65 else "virus"
                    self.counters[kind] += 1
                    name = f"person{pid}_{kind}_{self.counters[kind]}.jpeg"
                else:
                    prefix = "NORMAL2-" if pid % 5 == 0 else ""
                    name = f"{prefix}IM-{pid:04d}-{k:04d}.jpeg"
                out.append((name, anatomy))
        return out


def make_manifest_csv(
    root: str | Path,
    *,
    n: int = 60,
    image_size: int = 32,
    seed: int = 0,
    with_split: bool = True,
    with_group: bool = True,
) -> Path:
    """Write PNG phantoms under `root/images/` and `root/manifest.csv` (`path,label[,split][,group]`).

    Labels are the strings "normal"/"pneumonia"; patients have 1-3 images, named `p0007_2.png`, and get a
    split (70/15/15 by patient) when `with_split`. Returns the CSV path.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows: list[dict[str, str]] = []
    patient = 0
    while len(rows) < n:
        patient += 1
        label = int(rng.random() < 0.5)
        anatomy = random_anatomy(rng)
        split = str(rng.choice(("train", "val", "test"), p=(0.7, 0.15, 0.15)))
        for k in range(min(n - len(rows), int(rng.integers(1, 4)))):
            rel = f"images/p{patient:04d}_{k}.png"
            pixels = render_phantom(rng, size=image_size, pneumonia=bool(label), anatomy=anatomy)
            Image.fromarray(pixels, mode="L").save(root / rel)
            rows.append({"path": rel, "label": ("normal", "pneumonia")[label], "split": split,
                         "group": f"patient{patient:04d}"})
    columns = ["path", "label"] + (["split"] if with_split else []) + (["group"] if with_group else [])
    csv_path = root / "manifest.csv"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


def make_npz(
    path: str | Path,
    *,
    n_train: int = 60,
    n_val: int = 20,
    n_test: int = 20,
    image_size: int = 28,
    seed: int = 0,
    rgb: bool = False,
    classes: list[str] | None = None,
) -> Path:
    """Write a MedMNIST-style `.npz`: `{split}_images` (N, H, W[, 3]) uint8, `{split}_labels` (N, 1) uint8.

    Label 1 is pneumonia. `classes`, when given, is stored as a `classes` array of names.
    """
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        if n <= 0:
            continue
        labels = (np.arange(n) % 2).astype(np.uint8)
        images = np.stack(
            [render_phantom(rng, size=image_size, pneumonia=bool(y), anatomy=random_anatomy(rng)) for y in labels]
        )
        arrays[f"{split}_images"] = np.repeat(images[..., None], 3, axis=-1) if rgb else images
        arrays[f"{split}_labels"] = labels[:, None]
    if classes is not None:
        arrays["classes"] = np.array(classes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path
