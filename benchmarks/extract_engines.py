"""Extraction engines end to end, side by side in one run: the default engine (onnxruntime on this CPU) against
`--engine torch`, each against its forward-only ceiling (medians of interleaved repeats).

For each backbone, on real 224-px JPEGs from $HEADSTART_DATA/kaggle_cxr_224 (default ../shared/data), random
weights (speed does not depend on their values), batch 64 and headstart's other defaults:
  (a) forward only, on pre-made normalised tensors: torch eager (channels_last, inference_mode) and onnxruntime
      (the engine's exported graph and threads, NCHW input as extraction feeds it);
  (b) `headstart extract` end to end, default engine and `--engine torch`: the marginal rate between a 16-image
      and an n-image run, so interpreter start-up, model build and data scan drop out; the graph cache is warm;
  one-time cost: the onnxruntime engine set up as extraction does it, in this process, with a cold graph cache
      (export of the backbone with its taps, verification, session, the check on the first rows); break-even =
      that cost / (1/b_torch - 1/b_default) images.
Targets (issue 16): b default / b torch >= 1.3 for resnet18 and >= 2 for densenet121; b default / a onnxruntime
>= 0.9.

`--end-to-end` prints, instead, whole commands against the forward-only ratio measured in the same run (issue 22):
per interleaved repeat, (a) as above, then one `headstart extract` of the n images with the default engine and
one with `--engine torch` (warm graph cache); the end-to-end ratio is torch's wall time / the default's, and its
share of the forward-only ratio is the target (>= 0.85 for densenet121 on 320 images). Each command's seconds
outside its loop (wall - loop) are printed beside it: that is the one-time cost the default engine adds.

`--providers` prints, instead, the default engine's end-to-end rate for one model per provider (the README's
providers table): timm:resnet18, xrv:densenet121-res224-all (one channel, 224 px) and a ViT-Tiny-sized Hugging
Face encoder built from a config (`hf:headstart-bench/vit-tiny`: 12 blocks, width 192, 224 px; no weights file).

    .venv/bin/python benchmarks/extract_engines.py [--backbone resnet18 --backbone densenet121] [--n 640]
                                                   [--repeats 3] [--providers | --end-to-end]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI runs; must precede torch's OpenMP start

import h5py  # noqa: E402
import torch  # noqa: E402

import extract as bench  # noqa: E402  benchmarks/extract.py, beside this script
from headstart.backbones.registry import create_backbone  # noqa: E402
from headstart.engines import TorchEngine, resolve_engine  # noqa: E402
from headstart.engines.resolve import CHECK_ROWS  # noqa: E402
from headstart.extract.features import attach_engine, build_feature_models  # noqa: E402
from headstart.extract.preprocess import normalize_batch  # noqa: E402

CPU = torch.device("cpu")
PROVIDERS = ["timm:resnet18", "xrv:densenet121-res224-all", "hf:headstart-bench/vit-tiny"]


def forward_rates(name: str, *, n: int, batch_size: int, folder: Path) -> dict[str, float]:
    """(a): images/s of torch and onnxruntime on one pre-made batch (the graph from `folder`, exported once)."""
    rates = {}
    for engine in ("torch", "onnxruntime"):
        model, x, _ = bench.engine_forward(name, engine, CPU, batch_size=batch_size, folder=folder)
        rates[engine] = bench.forward_only(model, x, n=n, device=CPU)[0]
    return rates


def engine_of_run(manifest: Path, out: Path, *, backbone: str, env: dict) -> str:
    """Run one extraction and read which engine computed the set (then delete the file)."""
    bench.cli_run(manifest, out, backbone=backbone, device="cpu", decode="cpu", env=env, keep=True)
    with h5py.File(out, "r") as f:
        (attrs,) = [ds.attrs for ds in f["features"].values()]
        engine = f"{attrs['engine']} {attrs['engine_version']}"
    out.unlink()
    return engine


def tiny_hf_repo(hf_home: Path) -> None:
    """A ViT-Tiny-sized encoder's config and image processor, laid out as the Hugging Face hub cache holds them."""
    from transformers import ViTConfig

    revision = "0" * 40
    root = hf_home / "hub" / "models--headstart-bench--vit-tiny"
    snapshot = root / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    ViTConfig(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768, image_size=224,
              patch_size=16).save_pretrained(snapshot)
    (snapshot / "preprocessor_config.json").write_text(json.dumps(
        {"size": {"height": 224, "width": 224}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(revision)


def one_time_seconds(name: str, folder: Path) -> tuple[float, float]:
    """(one-time seconds, of which export + verification) of the onnxruntime engine as extraction sets it up:
    the backbone's taps exported into a cold graph cache, verified, loaded, and checked on CHECK_ROWS rows."""
    models = build_feature_models([name], weights="random", image_size=None, seed=0)
    prep = models[0].backbone.preprocessing
    probe = {models[0].geometry: torch.randint(0, 256, (CHECK_ROWS, prep.channels, prep.input_size, prep.input_size),
                                               dtype=torch.uint8)}
    os.environ["HEADSTART_ONNX_CACHE"] = str(folder)
    try:
        start = time.perf_counter()
        attach_engine(models[0], "onnxruntime", CPU, amp_dtype=None, probe=probe)
        seconds = time.perf_counter() - start
    finally:
        del os.environ["HEADSTART_ONNX_CACHE"]
    return seconds, models[0].engine.graph.export_seconds


def compare(name: str, manifests: tuple[Path, Path], n: int, args, tmp: Path, env: dict) -> None:
    small, large = manifests
    folder = tmp / f"graphs-{name.replace(':', '_').replace('/', '_')}"
    one_time, export_s = one_time_seconds(name, folder)  # the timed runs below find this graph in the cache
    env = {**env, "HEADSTART_ONNX_CACHE": str(folder)}
    bench.cli_run(small, tmp / "warm.h5", backbone=name, device="cpu", decode="cpu", env=env)
    runs: dict[str, list[float]] = {}
    for _ in range(args.repeats):  # interleaved, so machine noise hits every method alike
        rates = forward_rates(name, n=args.nfwd, batch_size=args.batch_size, folder=folder)
        for label, value in rates.items():
            runs.setdefault(f"a {label}", []).append(value)
        for engine in ("auto", "torch"):
            runs.setdefault(f"b {engine}", []).append(bench.headstart_rate(
                small, large, n, tmp=tmp, backbone=name, device="cpu", decode="cpu", engine=engine, env=env)[0])
    med = {k: statistics.median(v) for k, v in runs.items()}
    for k, v in runs.items():
        print(f"  {name:28s} {k:15s} {med[k]:7.1f} img/s   (runs: {', '.join(f'{x:.1f}' for x in v)})")
    saved = 1 / med["b torch"] - 1 / med["b auto"]
    print(f"  {name:28s} extract default/torch = {med['b auto'] / med['b torch']:.2f}   extract default / onnxruntime "
          f"forward-only = {med['b auto'] / med['a onnxruntime']:.2f}   forward-only onnxruntime/torch = "
          f"{med['a onnxruntime'] / med['a torch']:.2f}")
    pays = f"pays off after {one_time / saved:.0f} images" if saved > 0 else "never pays off"
    print(f"  {name:28s} one-time: {one_time:.1f} s (export + verification {export_s:.1f} s, then session and the "
          f"check on {CHECK_ROWS} rows); {pays}")


def end_to_end(name: str, large: Path, args, tmp: Path, env: dict) -> None:
    """Whole default-engine and torch commands on the large manifest, beside the forward-only ratio (medians).

    Wall-time ratios are the target; CPU-time ratios (the command's process CPU seconds, the forward's CPU ms per
    image) are printed beside them because on a shared machine they move much less with the other jobs' load.
    """
    folder = tmp / f"graphs-{name.replace(':', '_').replace('/', '_')}"
    env = {**env, "HEADSTART_ONNX_CACHE": str(folder)}
    bench.cli_run(large, tmp / "warm.h5", backbone=name, device="cpu", decode="cpu", env=env)  # exports the graph
    runs: dict[str, list[float]] = {}
    for _ in range(args.repeats):  # interleaved, so machine noise hits every method alike
        for engine in ("onnxruntime", "torch"):
            model, x, _ = bench.engine_forward(name, engine, CPU, batch_size=args.batch_size, folder=folder)
            rate, cpu_ms = bench.forward_only(model, x, n=args.nfwd, device=CPU)
            runs.setdefault(f"forward {engine}", []).append(rate)
            runs.setdefault(f"forward cpu {engine}", []).append(cpu_ms * 320 / 1000)  # CPU s per 320 images
        for engine in ("auto", "torch"):
            wall, cpu, loop = bench.cli_run(large, tmp / "e2e.h5", backbone=name, device="cpu", decode="cpu",
                                            engine=engine, env=env)
            runs.setdefault(f"wall {engine}", []).append(wall)
            runs.setdefault(f"cpu {engine}", []).append(cpu)
            runs.setdefault(f"outside {engine}", []).append(wall - loop)
        runs.setdefault("load", []).append(os.getloadavg()[0])
    med = {k: statistics.median(v) for k, v in runs.items()}
    for k, v in runs.items():
        unit = "img/s" if k.startswith("forward ") and "cpu" not in k else ("" if k == "load" else "s")
        print(f"  {name:28s} {k:23s} {med[k]:7.2f} {unit:5s} (runs: {', '.join(f'{x:.2f}' for x in v)})")
    for what, whole, forward in [
        ("wall", med["wall torch"] / med["wall auto"], med["forward onnxruntime"] / med["forward torch"]),
        ("cpu ", med["cpu torch"] / med["cpu auto"], med["forward cpu torch"] / med["forward cpu onnxruntime"]),
    ]:
        print(f"  {name:28s} {what} end-to-end default/torch = {whole:.2f}   forward-only onnxruntime/torch = "
              f"{forward:.2f}   share = {whole / forward:.2f} (target >= 0.85)")


def providers(manifests: tuple[Path, Path], n: int, args, tmp: Path, env: dict) -> None:
    hf_home = tmp / "hf_home"
    tiny_hf_repo(hf_home)
    env = {**env, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HEADSTART_ONNX_CACHE": str(tmp / "graphs")}
    small, large = manifests
    for name in args.backbone or PROVIDERS:
        engine = engine_of_run(small, tmp / "which.h5", backbone=name, env=env)  # also warms the graph cache
        rates = [bench.headstart_rate(small, large, n, tmp=tmp, backbone=name, device="cpu", decode="cpu",
                                      env=env)[0] for _ in range(args.repeats)]
        print(f"  {name:32s} {statistics.median(rates):7.1f} img/s  ({engine}; runs: "
              f"{', '.join(f'{x:.1f}' for x in rates)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", action="append", help="repeat; default resnet18 and densenet121 (or the providers)")
    ap.add_argument("--n", type=int, default=640, help="224-px images in the large run (half per class)")
    ap.add_argument("--nfwd", type=int, default=256, help="images per forward-only pass")
    ap.add_argument("--batch-size", type=int, default=64, help="(a); (b) uses headstart's default, 64")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--providers", action="store_true", help="the default engine's rate for one model per provider")
    ap.add_argument("--end-to-end", action="store_true",
                    help="whole commands (default engine / torch) against the forward-only ratio, same run")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if not bench.DATA.is_dir():
        sys.exit(f"{bench.DATA} is absent; this benchmark needs the real JPEGs in ../shared/data")
    paths = bench.balanced(bench.jpeg_paths(bench.DATA / "kaggle_cxr_224"), args.n)
    import onnxruntime

    print(f"224-px JPEGs ({args.n} per large run), batch {args.batch_size}, random weights, CPU, torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; medians of {args.repeats}")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        manifests = (bench.make_manifest(paths[:bench.N_SMALL], tmp / "small"),
                     bench.make_manifest(paths, tmp / "large"))
        if args.providers:
            providers(manifests, args.n, args, tmp, {})
        elif args.end_to_end:
            for name in args.backbone or ["densenet121"]:
                end_to_end(name, manifests[1], args, tmp, {})
        else:
            for name in args.backbone or ["resnet18", "densenet121"]:
                compare(name, manifests, args.n, args, tmp, {})
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    from result import run  # benchmarks/result.py: --json PATH writes the output with command, date, machine, load

    run(main)
