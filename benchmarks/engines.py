"""CPU engines for a frozen backbone, side by side in one run: PyTorch eager vs onnxruntime (medians of repeats).

Default mode, forward only: real 224-px JPEGs from $HEADSTART_DATA/kaggle_cxr_224 (default ../shared/data) are
decoded once with headstart's decoder and preprocessing into batches of 64, then each backbone (random weights:
speed does not depend on their values) runs them on
  torch        eager, channels_last, inference_mode, fp32 (what extraction does today), and
  onnxruntime  the engine's exported graph, CPU provider, ORT_ENABLE_ALL, its default threads.
It prints images/s, the ratio, the max abs difference and the lowest per-row cosine between the engines, the
one-time cost (export + verification + session, plus the first-batch check) and the break-even image count.

`--threads` mode measures onnxruntime's thread settings end to end: a DataLoader with one decode worker (as
extraction runs on a 2-core CPU) decodes the JPEGs while the engine runs, for each intra/inter-op split and
spinning policy, against torch. Taken under heavy load it favoured one thread; `engines.runtime.onnx_threads`
now follows a quiet-machine measurement of the extraction loop itself (two threads, 48.9 vs 26.7 images/s).

    .venv/bin/python benchmarks/engines.py [--backbone resnet18 --backbone densenet121] [--batches 2]
                                           [--repeats 3] [--threads]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI runs; must precede torch's OpenMP start

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from headstart.backbones.registry import create_backbone  # noqa: E402
from headstart.backbones.types import Preprocessing  # noqa: E402
from headstart.data.decode import decode_image  # noqa: E402
from headstart.engines import OnnxEngine, TorchEngine, resolve_engine  # noqa: E402
from headstart.engines.resolve import CHECK_ROWS  # noqa: E402
from headstart.extract.preprocess import normalize_batch, to_uint8_tensor  # noqa: E402

DATA = Path(os.environ.get("HEADSTART_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
CPU = torch.device("cpu")


class Jpegs(Dataset):
    """Real JPEGs through headstart's decoder and crop, as extraction's workers produce them (uint8)."""

    def __init__(self, paths: list[Path], prep: Preprocessing):
        self.paths, self.prep = paths, prep

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return to_uint8_tensor(decode_image(self.paths[i], min_size=self.prep.resize_size), self.prep)


def pick_paths(n: int) -> list[Path]:
    paths = sorted(p for p in (DATA / "kaggle_cxr_224").rglob("*") if p.suffix.lower() in (".jpeg", ".jpg"))
    if not paths:
        sys.exit(f"no JPEGs under {DATA / 'kaggle_cxr_224'}; this benchmark needs the real images in ../shared/data")
    step = max(1, len(paths) // n)  # spread over both classes
    return [paths[(i * step) % len(paths)] for i in range(n)]


def rate(engine, batches: list[torch.Tensor]) -> float:
    start = time.perf_counter()
    for x in batches:
        engine(x)
    return sum(len(x) for x in batches) / (time.perf_counter() - start)


def compare_forward(name: str, batches: list[torch.Tensor], *, repeats: int) -> dict:
    backbone = create_backbone(name, weights="random")
    torch_engine = TorchEngine(backbone.module, CPU)
    with tempfile.TemporaryDirectory() as cache:  # a cold graph cache: the export is really paid
        start = time.perf_counter()
        onnx_engine = resolve_engine("onnxruntime", CPU, backbone=backbone, folder=Path(cache))
        resolve_s = time.perf_counter() - start
        start = time.perf_counter()
        onnx_engine(batches[0])  # the first call is the first-batch check (a torch forward on CHECK_ROWS rows)
        first_call_s = time.perf_counter() - start
    torch_engine(batches[0])  # warm-up
    rates: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
    for _ in range(repeats):  # interleaved, so machine noise hits both alike
        rates["torch"].append(rate(torch_engine, batches))
        rates["onnxruntime"].append(rate(onnx_engine, batches))
    med = {k: statistics.median(v) for k, v in rates.items()}
    diff, cos = 0.0, 1.0
    for x in batches:
        a, b = torch_engine(x), onnx_engine(x)
        diff = max(diff, float(np.abs(a - b).max()))
        cos = min(cos, float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min()))
    # One-time cost: export + verification + session, and the first batch's extra torch forward on CHECK_ROWS.
    one_time = resolve_s + CHECK_ROWS / med["torch"]
    saved_per_image = 1 / med["torch"] - 1 / med["onnxruntime"]
    return {"name": name, "rates": rates, "med": med, "diff": diff, "cos": cos, "export_s": onnx_engine.graph.export_seconds,
            "exporter": onnx_engine.graph.exporter, "resolve_s": resolve_s, "first_call_s": first_call_s,
            "one_time_s": one_time, "break_even": one_time / saved_per_image if saved_per_image > 0 else float("inf")}


def forward_mode(args) -> None:
    prep = Preprocessing()  # 224 px crop of a 256 resize: the torchvision default every backbone here uses
    paths = pick_paths(args.batch_size * args.batches)
    images = torch.stack([Jpegs(paths, prep)[i] for i in range(len(paths))])
    batches = [normalize_batch(images[i:i + args.batch_size], prep, device=CPU)
               for i in range(0, len(images), args.batch_size)]
    print(f"forward only, {len(paths)} real JPEGs ({DATA.name}/kaggle_cxr_224) in batches of {args.batch_size} "
          f"at 224 px, random weights, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"{os.cpu_count()} cores; medians of {args.repeats}")
    for name in args.backbone:
        r = compare_forward(name, batches, repeats=args.repeats)
        t, o = r["med"]["torch"], r["med"]["onnxruntime"]
        runs = "; ".join(f"{k} {', '.join(f'{v:.1f}' for v in vs)}" for k, vs in r["rates"].items())
        print(f"{name:12s} torch {t:6.1f} img/s   onnxruntime {o:6.1f} img/s   x{o / t:.2f}   "
              f"max abs diff {r['diff']:.1e}   min cosine {r['cos']:.7f}   (runs: {runs})")
        print(f"{'':12s} one-time: export+verify {r['export_s']:.1f} s ({r['exporter']}), resolve {r['resolve_s']:.1f} s, "
              f"+ first-batch check {CHECK_ROWS / t:.1f} s = {r['one_time_s']:.1f} s; pays off after "
              f"{r['break_even']:.0f} images")


def threads_mode(args) -> None:
    """End to end with one decode worker: which onnxruntime thread split is fastest beside it."""
    import onnxruntime as ort

    prep = Preprocessing()
    paths = pick_paths(args.batch_size * args.batches)
    cores = os.cpu_count() or 1
    configs = [(1, 1, False, False), (2, 1, False, False), (2, 1, False, True), (1, 2, True, False),
               (2, 2, True, False)]  # (intra, inter, parallel execution, spinning)
    if cores > 2:
        configs.append((cores, 1, False, False))
    print(f"end to end, {len(paths)} real JPEGs, batch {args.batch_size}, 1 decode worker, {cores} cores, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}; medians of {args.repeats}")
    for name in args.backbone:
        backbone = create_backbone(name, weights="random")
        torch_engine = TorchEngine(backbone.module, CPU)
        with tempfile.TemporaryDirectory() as cache:
            graph = resolve_engine("onnxruntime", CPU, backbone=backbone, folder=Path(cache)).graph
            model = graph.model.read_bytes() if isinstance(graph.model, Path) else graph.model
        engines = {"torch": torch_engine}
        for intra, inter, parallel, spin in configs:
            engine = OnnxEngine(model, threads=intra, spinning=spin)
            if inter > 1 or parallel:  # rebuild the session with an inter-op pool
                options = ort.SessionOptions()
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
                options.intra_op_num_threads, options.inter_op_num_threads = intra, inter
                options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
                engine.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
            label = f"ort intra {intra} inter {inter}{' parallel' if parallel else ''}{' spin' if spin else ''}"
            engines[label] = engine
        results: dict[str, list[float]] = {k: [] for k in engines}
        for _ in range(args.repeats):
            for label, engine in engines.items():
                loader = DataLoader(Jpegs(paths, prep), batch_size=args.batch_size, num_workers=1, prefetch_factor=4)
                start = time.perf_counter()
                for images in loader:
                    engine(normalize_batch(images, prep, device=CPU))
                results[label].append(len(paths) / (time.perf_counter() - start))
        base = statistics.median(results["torch"])
        for label, runs in results.items():
            med = statistics.median(runs)
            print(f"{name:12s} {label:36s} {med:6.1f} img/s  x{med / base:.2f} torch   "
                  f"(runs: {', '.join(f'{v:.1f}' for v in runs)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", action="append", help="repeat; default resnet18 and densenet121")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=2, help="batches per timed pass")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", action="store_true", help="measure onnxruntime's thread split end to end")
    args = ap.parse_args()
    args.backbone = args.backbone or ["resnet18", "densenet121"]
    logging.basicConfig(level=logging.WARNING)
    (threads_mode if args.threads else forward_mode)(args)


if __name__ == "__main__":
    from result import run  # benchmarks/result.py: --json PATH writes the output with command, date, machine, load

    run(main)
