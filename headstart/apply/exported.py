"""An exported model (`model.onnx` or `model.pt2` plus its sidecar `model.json`) as a scorer.

The sidecar says how to decode and crop an image (the same extract code does it), and holds the model file's
sha256, so a damaged or swapped file is refused in one line. The graph itself normalises; it takes float32
images in [0, 1] at its input size, which is checked against the card before any image is decoded.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from headstart.apply.card import RunCard, card_from_dict, read_card
from headstart.apply.pt2 import load_pt2
from headstart.backbones.weights import file_sha256
from headstart.engines.export import INPUT_NAME, require_onnx
from headstart.engines.runtime import OnnxEngine, onnx_threads
from headstart.errors import DataError, one_line

log = logging.getLogger(__name__)

MODEL_SUFFIXES = (".onnx", ".pt2")
OUTPUT_NAME = "probabilities"  # the graph's one output


def sidecar_path(model: Path) -> Path:
    """`model.onnx` -> `model.json`: the card sits next to the model, under the same stem."""
    return model.with_suffix(".json")


class ExportedScorer:
    """Probabilities from an exported graph: onnxruntime for .onnx (the engines' session and threads), the
    re-loaded program for .pt2; both on the CPU."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path} does not exist; expected a model file written by `headstart export` "
                            "(.onnx or .pt2, with its model.json), or a run folder")
        data = read_card(sidecar_path(self.path))
        self.card: RunCard = card_from_dict(data, where=str(sidecar_path(self.path)))
        entry = (data.get("exports") or {}).get(self.path.suffix.lstrip("."))
        expected = entry.get("model_sha256") if isinstance(entry, dict) else None
        if expected is None:
            raise DataError(f"{sidecar_path(self.path)} describes no {self.path.suffix} model (it lists "
                            f"{', '.join(data.get('exports') or {}) or 'none'}); export the run to {self.path} again")
        if expected != file_sha256(self.path):
            raise DataError(f"{self.path} is damaged or was replaced: its sha256 differs from the one "
                            f"{sidecar_path(self.path).name} recorded; export the run again")
        prep = self.card.preprocessing
        self.input_shape = (prep.channels, prep.input_size, prep.input_size)
        self.engine_name = "onnxruntime" if self.path.suffix == ".onnx" else "torch.export"  # what computes it
        if self.path.suffix == ".onnx":
            require_onnx()
            try:
                self.engine = OnnxEngine(self.path, threads=onnx_threads())
            except Exception as exc:  # noqa: BLE001 - onnxruntime's parse errors carry no useful type
                raise DataError(f"{self.path} cannot be loaded by onnxruntime ({one_line(exc, limit=100)}); it is "
                                "damaged; export the run again") from None
            self._check_onnx_input()
            self._run = self._run_onnx
        else:
            self.program = load_pt2(self.path)
            self._run = self._run_pt2

    def score(self, images: torch.Tensor) -> np.ndarray:
        """(B, C, H, W) uint8 crops -> (B, n_classes) probabilities (multi-label: NaN for untrained findings,
        whose graph outputs are 0, as `predict` on the run writes them)."""
        x = images.float().div_(255.0)
        if tuple(x.shape[1:]) != self.input_shape:
            raise DataError(f"{self.path.name} takes inputs of shape (batch, {', '.join(map(str, self.input_shape))}); "
                            f"got {tuple(x.shape)}; resize and crop images as {sidecar_path(self.path).name} says")
        return self.card.blank_untrained(self._run(x)) if self.card.multilabel else self._run(x)

    def _check_onnx_input(self) -> None:
        inputs = self.engine.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
            raise DataError(f"{self.path} has inputs {[i.name for i in inputs]}; expected one named {INPUT_NAME!r} "
                            "(a model written by `headstart export`)")
        fixed = [d if isinstance(d, int) else None for d in inputs[0].shape[1:]]
        if any(d is not None and d != want for d, want in zip(fixed, self.input_shape)) or len(fixed) != 3:
            raise DataError(f"{self.path.name} takes inputs of shape (batch, {', '.join(map(str, fixed))}) but "
                            f"{sidecar_path(self.path).name} describes {self.input_shape}; the model card does not "
                            "belong to this model; export the run again")

    def _run_onnx(self, x: torch.Tensor) -> np.ndarray:
        out = self.engine(x)
        if not isinstance(out, dict) or OUTPUT_NAME not in out:
            raise DataError(f"{self.path} has no output named {OUTPUT_NAME!r}; expected a model written by "
                            "`headstart export`")
        return out[OUTPUT_NAME]

    def _run_pt2(self, x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return self.program(x).numpy()
