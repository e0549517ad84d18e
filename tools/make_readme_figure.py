"""Make the README's picture from a demo report: `make readme-figure` (after `make demo`).

Takes the report's cost-against-accuracy plot (`compare` draws it as plots/*cost_accuracy.png), scales it to
README width and stores it as a small palette PNG in docs/images/, so the picture on the package page is the
demo's own output, never drawn by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "images" / "cost-accuracy.png"
WIDTH = 800
MAX_BYTES = 100_000


def make_figure(report: Path, target: Path = TARGET, width: int = WIDTH) -> Path:
    found = sorted(report.glob("plots/*cost_accuracy.png"))
    if not found:
        raise SystemExit(f"no plots/*cost_accuracy.png under {report}; run `make demo` first")
    with Image.open(found[0]) as image:
        image = image.convert("RGB")
        if image.width > width:
            image = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
        small = image.quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    target.parent.mkdir(parents=True, exist_ok=True)
    small.save(target, optimize=True)
    if target.stat().st_size > MAX_BYTES:
        raise SystemExit(f"{target} is {target.stat().st_size:,} bytes, over {MAX_BYTES:,}: lower --width")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", nargs="?", type=Path, default=ROOT / "demo-out" / "report",
                        help="a report folder written by `headstart compare` (default: demo-out/report)")
    parser.add_argument("--width", type=int, default=WIDTH)
    args = parser.parse_args()
    path = make_figure(args.report, width=args.width)
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size:,} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
