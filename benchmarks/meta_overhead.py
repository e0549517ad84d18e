"""What recording image metadata costs the extraction workers: one image's decode + crops, without and with it.

"without" is the loader's PIL path as it was before metadata (`source.load`, then one crop per geometry); "with" is
`DecodedImages.decode_row` as `extract` runs it now (`source.load_with_meta`: the same decode plus the stored
header, the file size and the perceptual hash, then the crops and the row's metadata as text). Both run on the same
files, alternating image by image, for several rounds; per image the fastest round counts (the rest is waiting for
a shared CPU), and the mean over images is printed.

    .venv/bin/python benchmarks/meta_overhead.py [--n 300] [--rounds 5] [--data ../shared/data/kaggle_cxr_224/train]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from headstart.backbones.types import Preprocessing
from headstart.data.sources import load_source
from headstart.extract.loader import DecodedImages
from headstart.extract.preprocess import to_uint8_tensor

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "kaggle_cxr_224" / "train"
PREP = Preprocessing(input_size=224, resize_size=256, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                     interpolation="bilinear")  # resnet18's geometry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--n", type=int, default=300, help="images, evenly spaced over the folder")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)  # a loader worker runs one thread
    source = load_source(args.data)
    picks = np.linspace(0, len(source.samples) - 1, args.n).round().astype(int)
    images = DecodedImages(source, source.samples, picks, [PREP])

    def without(row: int) -> None:
        img = source.load(source.samples[row], min_size=images.min_size)
        {key: to_uint8_tensor(img, prep) for key, prep in images.geometries.items()}

    # Per image, the two paths alternate, and the fastest of the rounds counts: on a shared machine the minimum is
    # the cost of the work itself, the rest is waiting for the CPU.
    times = {"without": np.full((args.rounds, len(picks)), np.inf), "with": np.full((args.rounds, len(picks)), np.inf)}
    for r in range(args.rounds):
        for i, row in enumerate(picks.tolist()):
            for name, run in (("without", without), ("with", images.decode_row)):
                start = time.perf_counter()
                run(row)
                times[name][r, i] = time.perf_counter() - start
    a, b = (float(times[name].min(axis=0).mean() * 1e3) for name in ("without", "with"))
    medians = {name: float(np.median(t.mean(axis=1)) * 1e3) for name, t in times.items()}
    print(f"{len(picks)} images from {args.data}, decode + {PREP.resize_size}/{PREP.input_size} crop per image "
          f"(fastest of {args.rounds} rounds): without metadata {a:.3f} ms, with metadata {b:.3f} ms: +{b - a:.3f} ms "
          f"(+{100 * (b / a - 1):.0f}%); median round: {medians['without']:.3f} vs {medians['with']:.3f} ms")


if __name__ == "__main__":
    from result import run  # benchmarks/result.py: --json PATH writes the output with command, date, machine, load

    run(main)
