"""Extraction throughput on real chest X-ray JPEGs, three ways, side by side in one run (medians of repeats).

(a) forward-only: the backbone on pre-made normalised tensors, run by the engine (b) uses - the ceiling: torch
    eager (eval, inference_mode, channels_last), or onnxruntime (the exported graph extraction runs, NCHW);
(b) `headstart extract` through its command line, with the defaults a user gets (batch 64, decode sized
    to the machine, the default engine, staging, HDF5 publication); only `--weights random` is added (this machine cannot download
    weights, and speed does not depend on their values). The fixed start-up (interpreter, torch import, model
    build, data scan) is removed by taking the marginal rate between a 16-image and a full run:
    (n_large - n_small) / (t_large - t_small);
(c) the tutorial loop: ImageFolder-style full PIL decode, torchvision transforms, NCHW fp32, no
    inference_mode (torch.no_grad), same batch size and workers as (b) (`--no-tutorial` skips it).

The two image sets are the issue's: 1,280 real 224-px JPEGs from `kaggle_cxr_224` (640 per class, no repeats)
and 600 full-size JPEGs made by repeating the 48 of `kaggle_cxr_fullsize_sample` (symlinks). Targets (ResNet18,
batch 64, CPU): b/a >= 0.9 on 224 px, >= 0.8 on full size. The data folder is $HEADSTART_DATA, default
../shared/data.

`--profile` instead runs `run_extract` in this process once per set and prints where the loop's time goes
(waiting for the decode (threads between forwards on a CPU, else a worker), normalisation, forward, waiting for staging, publication).

    .venv/bin/python benchmarks/extract.py [--backbone resnet18] [--repeats 3] [--n224 1280] [--nfull 600]
                                           [--device cpu|cuda] [--decode cpu|device] [--engine auto|torch]
                                           [--no-tutorial] [--profile]

`--backbone` takes any provider's name (timm:NAME, xrv:NAME, hf:ORG/NAME; (c) is skipped for those). The engine
comparison (default engine vs `--engine torch` end to end, export cost) and the per-provider table are
`benchmarks/extract_engines.py`.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: what the headstart command sets for (b)

import h5py  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from torchvision import transforms  # noqa: E402

from headstart.backbones.registry import create_backbone  # noqa: E402
from headstart.device import autocast, autocast_dtype, default_workers, resolve_device  # noqa: E402
from headstart.engines import resolve_engine  # noqa: E402
from headstart.extract.loader import decode_plan  # noqa: E402
from headstart.extract.preprocess import normalize_batch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HEADSTART_DATA", REPO.parent / "shared" / "data"))
N_SMALL = 16  # the start-up run


def jpeg_paths(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg"))


def balanced(paths: list[Path], n: int) -> list[Path]:
    """n paths, half from each class folder, cycling through a class when it has fewer files (repetition)."""
    by_class: dict[str, list[Path]] = collections.defaultdict(list)
    for p in paths:
        by_class[p.parent.name].append(p)
    classes = sorted(by_class)
    return [by_class[classes[i % 2]][(i // 2) % len(by_class[classes[i % 2]])] for i in range(n)]


def make_manifest(paths: list[Path], root: Path) -> Path:
    """A CSV manifest of `paths` as symlinks (repeats get their own names); labels are the class folders."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["path,label"]
    for i, src in enumerate(paths):
        link = root / f"img{i:05d}{src.suffix}"
        if not link.exists():
            os.symlink(src.resolve(), link)  # a relative HEADSTART_DATA must not dangle
        lines.append(f"{link.name},{src.parent.name}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def engine_forward(name: str, engine: str, device: torch.device, *, batch_size: int,
                   folder: Path | None = None) -> tuple[object, torch.Tensor, str]:
    """(forward callable, one normalised batch in its layout, engine name) of backbone `name` (random weights) as
    extraction's `engine` runs it: torch eager channels_last, or onnxruntime's graph (exported into `folder`)."""
    backbone = create_backbone(name, weights="random")
    prep = backbone.preprocessing
    pixels = torch.randint(0, 256, (batch_size, prep.channels, prep.input_size, prep.input_size), dtype=torch.uint8)
    runner = resolve_engine(engine, device, backbone=backbone, amp_dtype=autocast_dtype("auto", device),
                            folder=folder)
    runner = getattr(runner, "primary", runner)  # onnxruntime before its first-batch check: the graph itself
    return runner, normalize_batch(pixels, prep, device=device, channels_last=runner.name == "torch"), runner.name


def forward_only(model, x: torch.Tensor, *, n: int, device: torch.device) -> tuple[float, float]:
    """(images/s, CPU ms per image) of the bare forward on one pre-made batch."""
    batch_size = x.shape[0]
    with torch.inference_mode(), autocast(device, autocast_dtype("auto", device)):
        for _ in range(3 if device.type == "cuda" else 1):  # warm-up (cuDNN autotuning on CUDA)
            model(x)
        _sync(device)
        start, cpu = time.perf_counter(), time.process_time()
        done = 0
        while done < n:
            model(x)
            done += batch_size
        _sync(device)
    return done / (time.perf_counter() - start), 1000 * (time.process_time() - cpu) / done


def cli_run(manifest: Path, out: Path, *, backbone: str, device: str, decode: str, engine: str = "auto",
            env: dict | None = None, keep: bool = False) -> tuple[float, float, float]:
    """(wall s, CPU s of the process and its decode workers, loop s recorded in the cache) of one
    `python -m headstart extract` with the defaults plus --weights random (and the given --engine)."""
    cmd = [sys.executable, "-m", "headstart", "-q", "extract", str(manifest), "-o", str(out), "-b", backbone,
           "--weights", "random"]
    if device != "auto":
        cmd += ["--device", device]
    if decode != "cpu":
        cmd += ["--decode", decode]
    if engine != "auto":
        cmd += ["--engine", engine]
    env = {**os.environ, **(env or {}), "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)  # CPU time includes the reaped decode workers
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"headstart extract failed:\n{stderr.decode()[-2000:]}")
    with h5py.File(out, "r") as f:
        (features,) = f["features"].values()  # the one set (provider names are stored without "/")
        loop = float(features.attrs["loop_seconds"])
    if not keep:
        out.unlink()
    return wall, usage.ru_utime + usage.ru_stime, loop


def headstart_rate(small: Path, large: Path, n_large: int, *, tmp: Path, **kw) -> tuple[float, float, float]:
    """(marginal images/s, marginal CPU ms per image, images/s inside the extraction loop) of the large run."""
    wall_small, cpu_small, _ = cli_run(small, tmp / "small.h5", **kw)
    wall_large, cpu_large, loop = cli_run(large, tmp / "large.h5", **kw)
    n = n_large - N_SMALL
    return n / (wall_large - wall_small), 1000 * (cpu_large - cpu_small) / n, n_large / loop


class TutorialImages(Dataset):
    """What the PyTorch transfer-learning tutorial does per image, every epoch."""

    def __init__(self, paths: list[Path]):
        self.paths = paths
        self.tf = transforms.Compose([
            transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return self.tf(Image.open(self.paths[i]).convert("RGB")), 0


def tutorial_rate(paths: list[Path], *, backbone: str, batch_size: int, workers: int, device: torch.device) -> float:
    model = torchvision.models.get_model(backbone).eval().to(device)
    loader = DataLoader(TutorialImages(paths), batch_size=batch_size, num_workers=workers)
    start = time.perf_counter()
    with torch.no_grad():
        for x, _ in loader:
            model(x.to(device))
    _sync(device)
    return len(paths) / (time.perf_counter() - start)


def profile(manifest: Path, n: int, *, backbone: str, device: str, decode: str, engine: str, tmp: Path) -> None:
    """One in-process `run_extract` with its phases timed by wrapping the functions the loop calls."""
    import headstart.extract.features as features
    import headstart.extract.runner as runner
    from headstart.cache.stager import Stager, WriteBehind
    from headstart.cache.writer import CacheWriter

    spent: dict[str, float] = collections.defaultdict(float)

    def timed(name, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.perf_counter() - t0
        return wrapper

    class TimedLoader:
        def __init__(self, loader):
            self.it = iter(loader)

        def __iter__(self):
            return self

        def __next__(self):
            t0 = time.perf_counter()
            try:
                return next(self.it)
            finally:
                spent["decode, or wait for the worker"] += time.perf_counter() - t0

    saved = (features.normalize_batch, runner.make_loader, Stager.write_batch, WriteBehind.wait, CacheWriter.finish)
    make_loader = runner.make_loader
    features.normalize_batch = timed("normalise (main)", features.normalize_batch)
    runner.make_loader = lambda *a, **k: TimedLoader(make_loader(*a, **k))
    Stager.write_batch = timed("stage batch (background thread)", Stager.write_batch)
    WriteBehind.wait = timed("wait for staging (main)", WriteBehind.wait)
    CacheWriter.finish = timed("publish (after the loop)", CacheWriter.finish)
    try:
        cfg = ExtractConfig(backbones=[backbone], weights="random", device=device, decode=decode, engine=engine)
        result = runner.run_extract(data=str(manifest), output=str(tmp / "profile.h5"), config=cfg)
    finally:
        (features.normalize_batch, runner.make_loader, Stager.write_batch, WriteBehind.wait, CacheWriter.finish) = saved
    (tmp / "profile.h5").unlink()
    loop = result.seconds
    print(f"  {n} images: loop {loop:.1f} s ({n / loop:.1f} images/s)")
    for name, seconds in spent.items():
        print(f"    {name:34s} {seconds:7.2f} s  {100 * seconds / loop:5.1f}% of the loop")
    fwd = loop - spent["decode, or wait for the worker"] - spent["normalise (main)"] - spent["wait for staging (main)"]
    print(f"    {'forward + copy back (the rest)':34s} {fwd:7.2f} s  {100 * fwd / loop:5.1f}% of the loop")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--n224", type=int, default=1280, help="224-px images in the large run (half per class)")
    ap.add_argument("--nfull", type=int, default=600, help="full-size images in the large run (by repetition)")
    ap.add_argument("--batch-size", type=int, default=64, help="(a) and (c); (b) uses headstart's default, 64")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--decode", default="cpu", choices=["cpu", "device"], help="headstart's --decode for (b)")
    ap.add_argument("--engine", default="auto", choices=["auto", "torch", "onnxruntime"],
                    help="headstart's --engine for (b); (a) runs the engine (b) resolves to")
    ap.add_argument("--no-tutorial", action="store_true", help="skip (c)")
    ap.add_argument("--profile", action="store_true", help="print the phase profile of (b) instead")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the repeated full-size images are deliberate duplicates
    if not DATA.is_dir():
        sys.exit(f"{DATA} is absent; this benchmark needs the real JPEGs in ../shared/data")
    sets = {
        "224px": balanced(jpeg_paths(DATA / "kaggle_cxr_224"), args.n224),
        "fullsize": balanced(jpeg_paths(DATA / "kaggle_cxr_fullsize_sample"), args.nfull),
    }
    device = resolve_device(args.device)
    workers = default_workers(device)  # (c)'s DataLoader workers: what a tutorial loop would use
    b_workers, b_threads = decode_plan(None, device, decode=args.decode)
    b_decode = f"{b_threads} decode threads between forwards" if b_threads else f"{b_workers} decode worker(s)"
    where = str(device) if device.type == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})"
    print(f"{args.backbone}, batch {args.batch_size}, (b) {b_decode}, (c) {workers} decode worker(s), {where}, "
          f"--decode {args.decode}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start; medians of {args.repeats}")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        manifests = {name: (make_manifest(paths[:N_SMALL], tmp / f"{name}-small"),
                            make_manifest(paths, tmp / f"{name}-large")) for name, paths in sets.items()}
        if args.profile:
            for name, (_, large) in manifests.items():
                print(f"{name}:")
                profile(large, len(sets[name]), backbone=args.backbone, device=args.device, decode=args.decode,
                        engine=args.engine, tmp=tmp)
            return
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # as run_extract does: fixed input sizes
        if ":" in args.backbone:
            args.no_tutorial = True  # the tutorial loop is torchvision's
        graphs = tmp / "graphs"  # (a) and (b) share the exported graph; its one-time export stays out of the timings
        model, x, engine = engine_forward(args.backbone, args.engine, device, batch_size=args.batch_size,
                                          folder=graphs)
        env = {"HEADSTART_ONNX_CACHE": str(graphs)}
        print(f"engine: {engine}")
        for small, _ in manifests.values():  # imports and the warm graph cache out of the timed runs
            cli_run(small, tmp / "warm.h5", backbone=args.backbone, device=args.device, decode=args.decode,
                    engine=args.engine, env=env)
        n_forward = max(len(p) for p in sets.values()) // 2  # between every two headstart runs
        forward = [forward_only(model, x, n=n_forward, device=device)]
        runs: dict[str, list[dict]] = {name: [] for name in sets}
        for repeat in range(args.repeats):  # interleaved, so a burst of load hits every method alike
            for name, paths in sets.items():
                small, large = manifests[name]
                rate, cpu, loop = headstart_rate(small, large, len(paths), tmp=tmp, backbone=args.backbone,
                                                 device=args.device, decode=args.decode, engine=args.engine,
                                                 env=env)
                run = {"b": rate, "b_cpu": cpu, "b_loop": loop}
                if not args.no_tutorial:
                    run["c"] = tutorial_rate(paths, backbone=args.backbone, batch_size=args.batch_size,
                                             workers=workers, device=device)
                forward.append(forward_only(model, x, n=n_forward, device=device))
                # (a) is the mean of the forward-only runs just before and just after this headstart run
                run["a"] = (forward[-2][0] + forward[-1][0]) / 2
                run["a_cpu"] = (forward[-2][1] + forward[-1][1]) / 2
                runs[name].append(run)
                print(f"  repeat {repeat + 1} {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in run.items())
                      + f", b/a {run['b'] / run['a']:.2f}, load {os.getloadavg()[0]:.1f}", flush=True)
    print(report(runs, tutorial=not args.no_tutorial))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


def report(runs: dict[str, list[dict]], *, tutorial: bool) -> str:
    """Medians per set, and the median of the per-repeat ratios (each taken side by side)."""
    med = lambda name, f: statistics.median(f(r) for r in runs[name])  # noqa: E731
    lines = ["set        (a) fwd img/s  (b) marginal img/s  (b) in-loop img/s  " + ("(c) tutorial  " if tutorial else "")
             + "b/a    in-loop/a  " + ("b/c   " if tutorial else "") + "CPU ms/img a / b  work a/b"]
    for name in runs:
        line = (f"{name:9s}  {med(name, lambda r: r['a']):13.1f}  {med(name, lambda r: r['b']):18.1f}  "
                f"{med(name, lambda r: r['b_loop']):17.1f}  ")
        if tutorial:
            line += f"{med(name, lambda r: r['c']):12.1f}  "
        line += f"{med(name, lambda r: r['b'] / r['a']):5.2f}  {med(name, lambda r: r['b_loop'] / r['a']):9.2f}  "
        if tutorial:
            line += f"{med(name, lambda r: r['b'] / r['c']):5.2f} "
        line += (f"{med(name, lambda r: r['a_cpu']):7.1f} / {med(name, lambda r: r['b_cpu']):5.1f}  "
                 f"{med(name, lambda r: r['a_cpu'] / r['b_cpu']):8.2f}")
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    from result import run  # benchmarks/result.py: --json PATH writes the output with command, date, machine, load

    run(main)
