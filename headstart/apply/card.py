"""What a run (or an exported model) says about itself: the facts `predict` applies and `export` writes down.

An exported model carries them in its sidecar `model.json`, a small model card: how to preprocess an image,
what the outputs mean (the task, its link and, for multi-label, the findings with their frozen thresholds), the
val/test metrics with their intervals, the data set's manifest hash and the package versions.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from headstart.backbones.types import Preprocessing
from headstart.errors import ConfigError, DataError, one_line
from headstart.tasks import TASK_KINDS
from headstart.tasks.core import Task
from headstart.tasks.factory import make_task, task_for_classes

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
    classes: list[str]  # output column i is the probability of classes[i] (multi-label: of finding i)
    threshold: float | dict | None  # binary: positive when p(classes[1]) >= threshold; None: argmax;
    # multi-label: {finding: threshold or None (no frozen threshold: untrained, or one class in val)}
    preprocessing: Preprocessing  # resize, crop and normalisation of the network input
    head: str | None = None  # logreg | linear | mlp | knn; None for fine-tunes
    decode: str = "cpu"  # how images were decoded for the features (extract --decode)
    metrics: dict = field(default_factory=dict)  # the record's {"val": {...}, "test": {...}}, intervals included
    dataset: dict = field(default_factory=dict)  # manifest_hash, classes, data or cache
    feature_set: dict = field(default_factory=dict)  # cached heads: the spec of the features the head was fitted on
    tta: int = 0  # test-time views averaged with the plain one (heads --tta on with extract --tta M); 0: none
    task_kind: str = ""  # binary | multiclass | multilabel; "" = single-label, from the number of classes
    untrained: dict = field(default_factory=dict)  # multi-label: {finding: why it was left out of training}
    label_policy: dict = field(default_factory=dict)  # multi-label: the run's --uncertain and --blank policies

    @property
    def task(self) -> Task:
        """What the run answers: it decides the prediction column and scores labelled rows (tasks)."""
        if self.task_kind:
            return make_task(self.task_kind, self.classes)
        return task_for_classes(self.classes)

    @property
    def multilabel(self) -> bool:
        return self.task_kind == "multilabel"

    def thresholds(self) -> list[float | None]:
        """Multi-label: the frozen threshold of each finding, in column order (None where none was frozen)."""
        table = self.threshold if isinstance(self.threshold, dict) else {}
        return [None if table.get(name) is None else float(table[name]) for name in self.classes]

    def blank_untrained(self, proba: np.ndarray) -> np.ndarray:
        """Multi-label: NaN in the columns of findings left out of training (their outputs mean nothing)."""
        if self.untrained:
            proba = np.array(proba, dtype=np.float64, copy=True)
            proba[:, [self.classes.index(n) for n in self.untrained if n in self.classes]] = np.nan
        return proba

    def to_dict(self) -> dict:
        out = asdict(self)
        out["preprocessing"] = self.preprocessing.to_dict() | {"channels": self.preprocessing.channels}
        kind = out.pop("task_kind") or self.task.kind
        out["task"], out["link"] = kind, self.task.link_name
        if kind == "multilabel":
            out["findings"] = list(self.classes)
        return out


_MEANING = {  # what the output columns are, per task kind
    "binary": "one probability per class, summing to 1; positive when p(classes[1]) >= threshold",
    "multiclass": "one probability per class, summing to 1; the prediction is the argmax",
    "multilabel": "one independent sigmoid probability per finding; finding i is present when p[i] >= "
                  "threshold[finding i]; a finding in `untrained` has no meaningful output",
}


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
        "output": {"name": "probabilities", "shape": ["batch", len(card.classes)], "classes": card.classes,
                   "link": card.task.link_name,
                   "meaning": _MEANING[card.task.kind]},
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
    classes, threshold, kind = data.get("classes"), data.get("threshold"), data.get("task") or ""
    multilabel = kind == "multilabel"
    if not (isinstance(classes, list) and len(classes) >= (1 if multilabel else 2) and kind in ("", *TASK_KINDS)
            and isinstance(data.get("preprocessing"), dict)
            and (_finding_thresholds(threshold, classes) if multilabel else _one_threshold(threshold))):
        raise DataError(f"{path} lacks valid task, classes, threshold or preprocessing; it is damaged; export the "
                        "run again")
    return data


def _one_threshold(value) -> bool:
    return value is None or isinstance(value, (int, float)) and math.isfinite(value)


def _finding_thresholds(value, findings: list) -> bool:
    """A multi-label threshold: an object naming every finding, each a finite number or null."""
    return isinstance(value, dict) and set(value) == set(map(str, findings)) and all(
        _one_threshold(v) for v in value.values())


def card_from_dict(data: dict, *, where: str) -> RunCard:
    prep = preprocessing_from(data["preprocessing"], where=where)
    return RunCard(run_id=str(data.get("run_id", "")), strategy=str(data.get("strategy", "")),
                   backbone=str(data.get("backbone", "")), classes=[str(c) for c in data["classes"]],
                   threshold=data.get("threshold"), preprocessing=prep, head=data.get("head"),
                   decode=str(data.get("decode") or "cpu"), metrics=data.get("metrics") or {},
                   dataset=data.get("dataset") or {}, feature_set=data.get("feature_set") or {},
                   task_kind=str(data.get("task") or ""), untrained=dict(data.get("untrained") or {}),
                   label_policy=dict(data.get("label_policy") or {}))


def _get(data, key: str):
    return data.get(key) if isinstance(data, dict) else None
