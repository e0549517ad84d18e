"""What a run (or an exported model) says about itself: the facts `predict` applies and `export` writes down.

An exported model carries them in its sidecar `model.json`, a small model card: how to preprocess an image,
what the outputs mean, the threshold frozen on val, the val/test metrics with their intervals, the data set's
manifest hash and the package versions.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from headstart.backbones.types import Preprocessing
from headstart.errors import ConfigError, DataError, one_line
from headstart.tasks.core import Task
from headstart.tasks.factory import task_for_classes

CARD_FORMAT = "headstart-model"
CARD_FORMAT_VERSION = 1  # bump when a field changes meaning; readers refuse newer versions
_CROP_NOTES = {  # how to make the graph's input from an image, per preprocessing.crop (extract --crop)
    "center": "resize the shorter side to preprocessing.resize_size, center-crop input_size",
    "full": "resize the whole image to input_size x input_size (aspect ratio not kept)",
    "pad": "resize the longer side to input_size and pad the shorter one with black, centred, to a square",
}


@dataclass
class RunCard:
    """One run's identity and decision rule, whichever strategy made it."""

    run_id: str
    strategy: str  # cached-head | finetune
    backbone: str
    classes: list[str]  # output column i is the probability of classes[i]
    threshold: float | None  # binary: positive when p(classes[1]) >= threshold; None: argmax
    preprocessing: Preprocessing  # resize, crop and normalisation of the network input
    head: str | None = None  # logreg | linear | mlp | knn; None for fine-tunes
    decode: str = "cpu"  # how images were decoded for the features (extract --decode)
    metrics: dict = field(default_factory=dict)  # the record's {"val": {...}, "test": {...}}, intervals included
    dataset: dict = field(default_factory=dict)  # manifest_hash, classes, data or cache
    feature_set: dict = field(default_factory=dict)  # cached heads: the spec of the features the head was fitted on
    tta: int = 0  # test-time views averaged with the plain one (heads --tta on with extract --tta M); 0: none

    @property
    def task(self) -> Task:
        """What the run answers: it decides the prediction column and scores labelled rows (tasks)."""
        return task_for_classes(self.classes)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["preprocessing"] = self.preprocessing.to_dict() | {"channels": self.preprocessing.channels}
        return out


def preprocessing_from(spec: dict, *, where: str) -> Preprocessing:
    """A Preprocessing from its stored dict (tuples were written as lists); DataError when it is not one."""
    try:
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k != "decode"}
        return Preprocessing(**values)
    except (TypeError, AttributeError, ConfigError) as exc:
        raise DataError(f"{where}: preprocessing {spec!r} is not valid ({one_line(exc)}); expected input_size, "
                        "resize_size, mean, std, interpolation and optionally channels and crop") from None


def model_card(card: RunCard, *, exports: dict, versions: dict) -> dict:
    """The sidecar model.json of an exported model: the run card, the input it takes and how it was made."""
    prep = card.preprocessing
    return {
        "format": CARD_FORMAT, "format_version": CARD_FORMAT_VERSION,
        **card.to_dict(),
        "input": {"name": "input", "shape": ["batch", prep.channels, prep.input_size, prep.input_size],
                  "dtype": "float32", "range": [0.0, 1.0],
                  "layout": "RGB" if prep.channels == 3 else "grayscale",
                  "note": _CROP_NOTES[prep.crop] + "; the graph normalises"},
        "output": {"name": "probabilities", "shape": ["batch", len(card.classes)], "classes": card.classes},
        "test_time_augmentation": "none: the graph scores the plain view only (export refuses runs made with "
                                  "heads --tta on, whose views are cut from the decoded image before the crop)",
        "exports": exports, "versions": versions,  # per format (onnx, pt2): file, sha256, exporter, check
    }


def read_card(path: Path) -> dict:
    """A sidecar model.json, checked for the fields `predict` relies on; DataError (one line) otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} is missing; an exported model needs its sidecar model card next to it (written "
                        f"by `headstart export`); export the run again") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path} cannot be read as JSON ({one_line(exc)}); it is damaged; export the run "
                        "again") from None
    if not isinstance(data, dict) or data.get("format") != CARD_FORMAT:
        raise DataError(f"{path} is not a headstart model card (format {_get(data, 'format')!r}); expected "
                        f"format {CARD_FORMAT!r}; export the run again")
    if int(data.get("format_version", 0)) > CARD_FORMAT_VERSION:
        raise DataError(f"{path} has format_version {data['format_version']}, newer than this headstart reads; "
                        "upgrade headstart")
    classes, threshold = data.get("classes"), data.get("threshold")
    if not (isinstance(classes, list) and len(classes) >= 2 and isinstance(data.get("preprocessing"), dict)
            and (threshold is None or isinstance(threshold, (int, float)) and math.isfinite(threshold))):
        raise DataError(f"{path} lacks valid classes, threshold or preprocessing; it is damaged; export the run "
                        "again")
    return data


def card_from_dict(data: dict, *, where: str) -> RunCard:
    prep = preprocessing_from(data["preprocessing"], where=where)
    return RunCard(run_id=str(data.get("run_id", "")), strategy=str(data.get("strategy", "")),
                   backbone=str(data.get("backbone", "")), classes=[str(c) for c in data["classes"]],
                   threshold=data.get("threshold"), preprocessing=prep, head=data.get("head"),
                   decode=str(data.get("decode") or "cpu"), metrics=data.get("metrics") or {},
                   dataset=data.get("dataset") or {}, feature_set=data.get("feature_set") or {})


def _get(data, key: str):
    return data.get(key) if isinstance(data, dict) else None
