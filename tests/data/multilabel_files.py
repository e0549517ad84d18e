"""Generated multi-label layouts for the tests: NIH ChestX-ray14 and CheXpert, with tiny images at their paths."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")  # NIH's own, unquoted
NIH_FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
                "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")
CHEXPERT_FINDINGS = ("No Finding", "Cardiomegaly", "Edema", "Atelectasis", "Pleural Effusion")


def image(path: Path, value: int = 100, size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (size, size), value % 256).save(path)
    return path


def make_nih(root: Path, *, n_patients: int = 12, per_patient: int = 3, seed: int = 0, subdir: str = "images_001/images",
             absent: int = 0, split_lists: bool = False) -> Path:
    """An NIH folder: `Data_Entry_2017_v2020.csv` with NIH's header, PNGs under `subdir`; `absent` rows lack images."""
    rng = np.random.default_rng(seed)
    lines = [NIH_HEADER]
    names = []
    for p in range(1, n_patients + 1):
        for k in range(per_patient):
            name = f"{p:08d}_{k:03d}.png"
            found = [f for f in NIH_FINDINGS[:6] if rng.random() < 0.3]
            labels = "|".join(found) or "No Finding"
            lines.append(f"{name},{labels},{k},{p},{40 + p},M,PA,2500,2048,0.143,0.143")
            names.append(name)
    root.mkdir(parents=True, exist_ok=True)
    (root / "Data_Entry_2017_v2020.csv").write_text("\n".join(lines) + "\n")
    for i, name in enumerate(names[absent:]):
        image(root / subdir / name, value=i)
    if split_lists:
        patients_test = {f"{p:08d}" for p in range(1, n_patients + 1) if p % 4 == 0}
        test = [n for n in names if n[:8] in patients_test]
        (root / "test_list.txt").write_text("\n".join(test) + "\n")
        (root / "train_val_list.txt").write_text("\n".join(n for n in names if n not in test) + "\n")
    return root


def chexpert_rows(n_patients: int = 10, seed: int = 0) -> list[dict[str, str]]:
    """CheXpert-style train.csv rows: frontal and lateral views, values 1.0 / 0.0 / -1.0 / blank."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(1, n_patients + 1):
        for view, projection in (("view1_frontal", "Frontal"), ("view2_lateral", "Lateral")):
            row = {"Path": f"CheXpert-v1.0-small/train/patient{p:05d}/study1/{view}.jpg", "Sex": "Female",
                   "Age": "50", "Frontal/Lateral": projection, "AP/PA": "AP" if projection == "Frontal" else ""}
            for finding in CHEXPERT_FINDINGS:
                row[finding] = str(rng.choice(["1.0", "0.0", "-1.0", ""]))
            rows.append(row)
    return rows


def write_chexpert(parent: Path, train: list[dict[str, str]], valid: list[dict[str, str]] | None = None,
                   *, folder: str = "CheXpert-v1.0-small", images: bool = True) -> Path:
    """Write `parent/folder/train.csv` (+ valid.csv) and an image at every Path (relative to `parent`)."""
    root = parent / folder
    root.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.csv", train), ("valid.csv", valid)):
        if not rows:
            continue
        with open(root / name, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        if images:
            for i, row in enumerate(rows):
                rel = Path(row["Path"])
                image(root.joinpath(*rel.parts[1:]), value=i)  # under the folder, whatever its name
    return root
