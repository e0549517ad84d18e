"""RUN -> what applies it: a cached-head run folder, a fine-tune run folder, or an exported model file.

    RUNS/<run_id>/ with head.json        a cached head: its backbone is rebuilt from the head's feature-set spec
    RUNS/<run_id>/ of a fine-tune        record.json + checkpoints/best.pt
    model.onnx | model.pt2               an exported model, with its sidecar model.json
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from headstart.apply.card import RunCard, preprocessing_from
from headstart.apply.exported import MODEL_SUFFIXES, ExportedScorer
from headstart.apply.rebuild import rebuild_features, rebuild_finetuned
from headstart.apply.scorers import CachedHeadScorer, FinetuneScorer
from headstart.errors import DataError, one_line
from headstart.evaluation.records import RECORD_NAME, RunRecord
from headstart.heads.persist import HEAD_JSON, SavedHead, read_head

log = logging.getLogger(__name__)

EXPECTED = ("expected a run folder RUNS/<run_id> written by `headstart heads` or `headstart finetune`, or a model "
            "file written by `headstart export` (.onnx or .pt2)")


@dataclass
class RunFolder:
    """What a run folder holds, read and checked, before anything is built."""

    path: Path
    record: RunRecord | None  # record.json; optional beside a saved head (head.json is self-contained)
    head: SavedHead | None  # cached-head runs only


def read_run(path: str | Path) -> RunFolder:
    """Read RUN's record and saved head; DataError (one line) when RUN is none of the things `predict` applies."""
    path = Path(path)
    if path.is_file() and path.name in (HEAD_JSON, RECORD_NAME):
        path = path.parent
    if not path.is_dir():
        raise DataError(f"{path}: {'no such file or folder' if not path.exists() else 'not a run folder'}; {EXPECTED}")
    record = _read_record(path / RECORD_NAME) if (path / RECORD_NAME).is_file() else None
    if (path / HEAD_JSON).is_file() or (record is not None and record.strategy == "cached-head"):
        head = read_head(path)
        run_id = head.info.get("run_id")
        if record is not None and run_id and run_id != record.run_id:
            raise DataError(f"{path}: {HEAD_JSON} belongs to run {run_id} but {RECORD_NAME} to {record.run_id}; "
                            "rerun `headstart heads` to write both again")
        return RunFolder(path, record, head)
    if record is None:
        raise DataError(f"{path} holds neither {HEAD_JSON} nor {RECORD_NAME}; {EXPECTED}")
    return RunFolder(path, record, None)


def _read_record(path: Path) -> RunRecord:
    try:
        return RunRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError, DataError) as exc:
        raise DataError(f"{path} cannot be read ({one_line(exc, limit=100)}); it is damaged; rerun the run to "
                        "write it again") from None


def head_card(run: RunFolder) -> RunCard:
    """The card of a cached-head run, from its head.json (and its record's metrics, when present)."""
    head, record, spec = run.head, run.record, run.head.feature_set
    where = str(run.path / HEAD_JSON)
    if not isinstance(spec.get("preprocessing"), dict):
        raise DataError(f"{where}: the feature set spec has no preprocessing; rerun `headstart heads`")
    kind, classes, threshold, untrained = head_task(head.info, head.classes, head.threshold, where=where)
    return RunCard(
        run_id=str(head.info.get("run_id") or run.path.name), strategy="cached-head",
        backbone=str(spec.get("backbone", "")), classes=classes, threshold=threshold,
        preprocessing=preprocessing_from(spec["preprocessing"], where=where), head=head.kind,
        decode=str(spec["preprocessing"].get("decode", "cpu")),
        metrics=record.metrics if record else {},
        dataset=record.dataset if record else {"manifest_hash": spec.get("manifest_hash"), "classes": classes},
        feature_set=spec, tta=int(head.info.get("tta_views", 0)) if head.info.get("tta") == "on" else 0,
        task_kind=kind, untrained=untrained, label_policy=_policy(head.info, record))


def head_task(info: dict, classes: list[str], threshold, *, where: str) -> tuple[str, list[str], object, dict]:
    """(task kind, output names, threshold, untrained findings) of a saved head or a record. A multi-label one
    names its findings (`labels`), a threshold object by finding and the findings left out with their reasons."""
    kind = str(info.get("task") or "")
    if kind != "multilabel":
        return kind, classes, threshold, {}
    findings = [str(f) for f in info.get("labels") or classes]
    table = info.get("threshold")
    if info.get("link", "sigmoid") != "sigmoid" or not isinstance(table, dict) or set(table) != set(findings):
        raise DataError(f"{where}: a multi-label head needs link 'sigmoid' and a threshold object naming each of "
                        f"its findings; found link {info.get('link')!r}, threshold {table!r}; it is damaged; rerun "
                        "`headstart heads`")
    return kind, findings, {f: table[f] for f in findings}, _untrained(info, findings)


def _untrained(info: dict, findings: list[str]) -> dict:
    """{finding: reason} of the findings left out of training: a dict, or a list of {name/finding, reason}."""
    raw = info.get("untrained") or {}
    if isinstance(raw, list):
        raw = {str(e.get("finding", e.get("name"))): e.get("reason") for e in raw if isinstance(e, dict)}
    return {str(f): str(r or "left out of training") for f, r in raw.items() if str(f) in findings}


def _policy(info: dict, record: RunRecord | None) -> dict:
    """The uncertainty and blank policies a multi-label run trained under (evaluation applies the blank rule)."""
    stored = info.get("label_policy") if isinstance(info.get("label_policy"), dict) else {}
    config = record.config if record else {}
    return {key: stored.get(key, config.get(key)) for key in ("uncertain", "blank")
            if stored.get(key, config.get(key)) is not None}


def open_run(path: str | Path, *, device: torch.device, amp_dtype: torch.dtype | None,
             weights: str | None = None):
    """The scorer that applies RUN: rebuilt, checked and ready on `device`.

    A cached head's scorer has no engine yet: `CachedHeadScorer.attach` gives it one (torch when never called)."""
    path = Path(path)
    if path.suffix in MODEL_SUFFIXES and not path.is_dir():
        if device.type != "cpu":
            log.info("%s runs on the CPU (%s)", path.name, "onnxruntime" if path.suffix == ".onnx" else "torch.export")
        return ExportedScorer(path)
    run = read_run(path)
    if run.head is not None:
        card = head_card(run)
        model = rebuild_features(card.feature_set, weights=weights, where=str(run.path / HEAD_JSON))
        if run.head.estimator.n_features_in_ != model.outputs[0].dim:
            raise DataError(f"{run.path / HEAD_JSON}: the head takes {run.head.estimator.n_features_in_} features, "
                            f"its feature set has {model.outputs[0].dim}; the head file is damaged; rerun "
                            "`headstart heads`")
        return CachedHeadScorer(card, model=model, head=run.head.estimator,
                                dtype=card.feature_set.get("dtype") or "float32", device=device, amp_dtype=amp_dtype)
    card, net = _finetuned(run)
    return FinetuneScorer(card, net=net, device=device, amp_dtype=amp_dtype)


def _finetuned(run: RunFolder) -> tuple[RunCard, torch.nn.Module]:
    record = run.record
    if record.strategy != "finetune":
        raise DataError(f"{run.path / RECORD_NAME} has strategy {record.strategy!r}; {EXPECTED}")
    classes = [str(c) for c in record.dataset.get("classes", [])]
    if len(classes) < 2:
        raise DataError(f"{run.path / RECORD_NAME} names {len(classes)} classes; it is damaged; rerun the fine-tune")
    net, prep = rebuild_finetuned(run.path, record.config, n_classes=len(classes))
    stored = record.config.get("preprocessing")
    if stored and preprocessing_from(stored, where=str(run.path / RECORD_NAME)) != prep:
        raise DataError(f"{run.path}: {record.backbone} rebuilt here preprocesses as {prep.to_dict()}, the run was "
                        f"trained with {stored}; this installation builds the backbone differently")
    kind, classes, threshold, untrained = head_task(
        {**record.dataset, "threshold": record.threshold}, classes, record.threshold, where=str(run.path / RECORD_NAME))
    card = RunCard(run_id=record.run_id, strategy="finetune", backbone=record.backbone, classes=classes,
                   threshold=threshold, preprocessing=prep, metrics=record.metrics, dataset=record.dataset,
                   task_kind=kind, untrained=untrained, label_policy=_policy({}, record))
    return card, net
