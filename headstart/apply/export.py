"""`headstart export RUN -o model.onnx|model.pt2`: the run as ONE verified graph plus its model card.

The graph is normalisation -> backbone -> (layer/pool) -> storage rounding -> head -> probabilities for a
cached head, normalisation -> network -> softmax for a fine-tune. It takes a float32 batch of [0, 1] images
(RGB, or one channel where the backbone reads one), already resized and cropped to the model's input size,
with a dynamic batch axis. kNN heads are exported as graph operations (reference rows as a constant, cosine
top-k, weighted vote), so every head kind exports.

The graph follows the head's link: before anything is exported, a cached head's graph is run on seeded random
features against the head's own `predict_proba` (per finding for multi-label, whose graph must end in one sigmoid
per finding, never a softmax), and a head whose graph computes something else is refused.

The export checks itself before writing: ONNX through the project's one exporter (`engines.export.export_onnx`,
checked in onnxruntime), .pt2 through `apply.pt2` (the re-loaded program), each against PyTorch on a seeded random
batch, refused above the tolerance. The sidecar `model.json` is written after the model and holds its
sha256, so `predict model.onnx` knows the pair belongs together; a run's model.onnx and model.pt2 share one card,
with one `exports` entry per format.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from torch import nn

from headstart.apply.card import model_card, read_card
from headstart.apply.config import EXPORT_SUFFIXES, ExportConfig
from headstart.apply.exported import OUTPUT_NAME, ExportedScorer, sidecar_path
from headstart.apply.pt2 import export_pt2
from headstart.apply.runs import open_run
from headstart.apply.scorers import CachedHeadScorer, head_proba
from headstart.backbones.weights import file_sha256
from headstart.engines.export import export_onnx
from headstart.errors import ConfigError, DataError, ExportError
from headstart.evaluation.records import jsonable
from headstart.io import write_bytes_atomic
from headstart.versions import collect_versions

log = logging.getLogger(__name__)


@dataclass
class ExportResult:
    """What `export` wrote and how close the exported graph is to PyTorch."""

    model: str  # the .onnx or .pt2 file
    card: str  # its sidecar model.json
    run_id: str
    exporter: str  # torchscript | dynamo (ONNX) or torch.export
    max_abs_diff: float  # exported vs PyTorch probabilities on the random check batch
    tolerance: float
    seconds: float  # build + export + verification


def run_export(*, run: str | Path, output: str | Path, config: ExportConfig) -> ExportResult:
    """Export RUN to `output` (.onnx or .pt2), verified, with `output`'s sidecar model card."""
    config.validate()
    out = Path(output)
    if out.suffix not in EXPORT_SUFFIXES:
        raise ConfigError(f"-o {out}: expected a file name ending in {' or '.join(EXPORT_SUFFIXES)}")
    if out.is_dir():
        raise DataError(f"output {out} is a directory; expected a file path such as {out / 'model.onnx'}")
    if Path(run).suffix in EXPORT_SUFFIXES and Path(run).is_file():
        raise ConfigError(f"{run} is already an exported model; export takes a run folder RUNS/<run_id>")
    scorer = open_run(run, device=torch.device("cpu"), amp_dtype=None, weights=config.weights)
    if isinstance(scorer, ExportedScorer):  # a folder named like a model file
        raise ConfigError(f"{run} is already an exported model; export takes a run folder RUNS/<run_id>")
    card = scorer.card
    if card.tta:
        raise ExportError(f"{run} averages {card.tta} test-time views (heads --tta on), cut from the decoded image "
                          "before the crop: a graph on the plain crop cannot bake them; score it with `headstart "
                          "predict`, or export the same head's --tta off run")
    if isinstance(scorer, CachedHeadScorer):
        check_head_graph(scorer, tolerance=config.tolerance)
    graph = scorer.graph()
    prep = card.preprocessing
    shape = (2, prep.channels, prep.input_size, prep.input_size)
    example = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    out.parent.mkdir(parents=True, exist_ok=True)
    check = torch.rand((max(config.check_batch, len(example) + 1), *shape[1:]),  # more rows: a fixed batch shows
                       generator=torch.Generator().manual_seed(0))
    if out.suffix == ".onnx":
        meta = {"headstart.run_id": card.run_id, "headstart.classes": json.dumps(card.classes),
                "headstart.task": card.task.kind, "headstart.link": card.task.link_name,
                "headstart.card": sidecar_path(out).name}
        done = export_onnx(Named(graph), example, out, tolerance=config.tolerance, check_input=check, metadata=meta)
    else:
        done = export_pt2(graph, example, out, tolerance=config.tolerance, check_input=check)
    log.debug("exported %s with %s: max |exported - PyTorch| = %.2g on %d random images (tolerance %g)",
              card.run_id, done.exporter, done.max_abs_diff, len(check), config.tolerance)
    export = {"file": out.name, "exporter": done.exporter, "model_sha256": file_sha256(out),
              "max_abs_diff": done.max_abs_diff, "tolerance": config.tolerance, "check_rows": len(check),
              "seconds": done.seconds}
    document = model_card(card, exports={**_other_exports(out, card.run_id), out.suffix.lstrip("."): export},
                          versions=_versions(out.suffix))
    write_bytes_atomic(sidecar_path(out), (json.dumps(jsonable(document), indent=2, sort_keys=True,
                                                      allow_nan=False) + "\n").encode())
    return ExportResult(model=str(out), card=str(sidecar_path(out)), run_id=card.run_id, exporter=done.exporter,
                        max_abs_diff=done.max_abs_diff, tolerance=config.tolerance, seconds=done.seconds)


def check_head_graph(scorer: CachedHeadScorer, *, tolerance: float, rows: int = 16) -> float:
    """Max |graph - predict_proba| of the head alone on seeded random features; ExportError when the graph is not
    the head's function (a softmax where the run's task links each finding by a sigmoid, say). Findings left out
    of training are NaN in `predict` and not compared."""
    card = scorer.card
    x = torch.randn((rows, int(scorer.head.n_features_in_)), generator=torch.Generator().manual_seed(2))
    want = head_proba(scorer.head, x.numpy(), card)
    with torch.no_grad():
        got = scorer.head_graph()(x).double().numpy()
    if got.shape != want.shape:
        raise ExportError(f"{card.run_id}: the {card.head} head's graph gives {got.shape[1]} output(s), the run "
                          f"has {want.shape[1]} ({card.task.kind}); it cannot be exported")
    scored = np.isfinite(want).all(axis=0)
    diff = float(np.abs(got[:, scored] - want[:, scored]).max()) if scored.any() else 0.0
    if not diff <= tolerance:
        raise ExportError(f"{card.run_id}: the {card.head} head's graph differs from its predict_proba by "
                          f"{diff:.2g} > {tolerance:g} on random features; a {card.task.kind} head's graph must end "
                          f"in its {card.task.link_name}; it is not exported")
    return diff


class Named(nn.Module):
    """The graph with its one output named `probabilities` (the engines' exporter names dict outputs by key)."""

    def __init__(self, graph: nn.Module):
        super().__init__()
        self.graph = graph

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {OUTPUT_NAME: self.graph(x)}


def _other_exports(out: Path, run_id: str) -> dict:
    """model.onnx and model.pt2 of one run share model.json: keep the other format's entry when it is there."""
    try:
        existing = read_card(sidecar_path(out))
    except DataError:
        return {}
    if existing.get("run_id") != run_id or not isinstance(existing.get("exports"), dict):
        return {}
    return {fmt: entry for fmt, entry in existing["exports"].items() if fmt != out.suffix.lstrip(".")}


def _versions(suffix: str) -> dict:
    versions = collect_versions()
    for package in (("onnx", "onnxruntime") if suffix == ".onnx" else ()):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions
