"""`headstart curve`'s speed claim, measured side by side in one run: a whole learning curve (the default ladder of
12 sizes x 5 repeats of logreg's quick sweep, each draw selected on val, thresholded and tested with bootstrap
intervals) costs less than ONE epoch of the tutorial-style frozen-backbone path.

(a) the curve: `run_curve` on a cache (a real 5,216-image one with --cache, e.g. densenet121 features at 64 px;
    read only: the curve writes its JSON to a temporary folder), timed whole.
(b) one frozen epoch: the PyTorch transfer-learning tutorial's "ConvNet as fixed feature extractor" loop from
    benchmarks/heads.py (PIL decode of every JPEG, Resize(256)/CenterCrop(224), ResNet18, BatchNorm in train mode,
    fc trained), timed on a few hundred real JPEGs from ../shared/data/kaggle_cxr_224 and scaled to 5,216 images,
    at the tutorial's batch size 4 and at 64.

Prints the ratio a/b (target < 1); asserts nothing.

    .venv/bin/python benchmarks/curve.py --cache CACHE.h5 [-b NAME] [--repeats 5] [--frozen-images 384] [--device cpu]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heads import add_frozen_arguments, frozen_epochs  # noqa: E402  (benchmarks/heads.py: the tutorial loop)

from headstart.device import resolve_device  # noqa: E402
from headstart.evaluation.timing import Timer, describe_device  # noqa: E402
from headstart.studies.curve import CurveConfig, run_curve  # noqa: E402
from headstart.evaluation.curve_doc import curve_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, required=True, help="the cache to draw the curve on")
    parser.add_argument("-b", "--feature-set", help="feature set in --cache (default: the first complete one)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--head", default="logreg")
    add_frozen_arguments(parser)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, format="%(message)s")
    device = resolve_device(args.device)
    print(f"device: {describe_device(device)}; torch {torch.__version__}; CPU threads {torch.get_num_threads()}")

    config = CurveConfig(feature_sets=[args.feature_set] if args.feature_set else None, heads=[args.head],
                         repeats=args.repeats, device=str(device))
    with tempfile.TemporaryDirectory() as tmp, Timer(device=device) as whole:
        (result,) = run_curve(cache_path=args.cache, runs_dir=tmp, config=config, progress=False)
    doc = result.document
    n_draws = len(doc["points"])
    print(f"\n(a) curve on {args.cache} '{doc['feature_set']}' (train {doc['splits']['train']}, val "
          f"{doc['splits']['val']}, test {doc['splits']['test']}): {len(doc['summary'])} sizes, {n_draws} draws")
    print(curve_table(doc))
    print(f"    whole run_curve: {whole.seconds:.1f} s; sweeps alone (sum of train_seconds): "
          f"{doc['timing']['train_seconds']:.1f} s; {whole.seconds / n_draws:.2f} s per draw")

    for epoch in frozen_epochs(args, device=device, label="(b)"):
        print(f"        ratio whole curve / one frozen epoch = {whole.seconds / epoch:.3f} (target < 1)")


if __name__ == "__main__":
    from result import run  # benchmarks/result.py: --json PATH writes the output with command, date, machine, load

    sys.exit(run(main))
