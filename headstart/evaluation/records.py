"""Run records: one `RUNS/<run_id>/record.json` per selected head or fine-tune, the input of `compare`.

The file is strict JSON (NaN and infinity are written as null) so browsers and jq parse it, and it is
deterministic: keys are sorted and floats use Python's shortest round-trip repr, so two runs on the same inputs
differ only in `created` and `timing`. Records are written to a temporary file and renamed into place.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from headstart.io import write_bytes_atomic
from headstart.errors import DataError, one_line
from headstart.versions import collect_versions

logger = logging.getLogger(__name__)

RECORD_NAME = "record.json"
RECORD_FORMAT_VERSION = 1  # bump when a field changes meaning; readers skip newer majors
STRATEGIES = ("cached-head", "finetune")


@dataclass
class RunRecord:
    """Everything `compare` needs about one run; metrics and predictions are plain JSON-ready containers."""

    run_id: str  # folder name under RUNS; see make_run_id
    strategy: str  # "cached-head" | "finetune"
    backbone: str  # registry name, e.g. "resnet18"
    head: str | None = None  # "logreg" | "linear" | "mlp" | "knn"; None for fine-tunes
    config: dict = field(default_factory=dict)  # the selected hyperparameters and options
    metrics: dict = field(default_factory=dict)  # {"val": {...}, "test": {...}} from bootstrap.evaluate
    history: list = field(default_factory=list)  # per-epoch dicts: epoch, train_loss, val_loss, ...
    timing: dict = field(default_factory=dict)  # extract/train/eval_seconds, images_per_second, peak_memory_mb, device
    predictions: dict = field(default_factory=dict)  # {"test": {"ids", "y_true", "proba"}, "val": ...}
    threshold: float | dict | None = None  # chosen on val, frozen for test; None: multi-class; by finding: multi-label
    seed: int = 0  # the run's seed
    dataset: dict = field(default_factory=dict)  # manifest_hash, classes, cache or data path
    created: str = ""  # ISO-8601 UTC time of writing; filled by write_record when empty
    versions: dict = field(default_factory=dict)  # package versions; filled by write_record when empty
    format_version: int = RECORD_FORMAT_VERSION  # layout version of this file

    def to_dict(self) -> dict:
        """A JSON-ready dict: numpy values become Python ones, NaN and infinity become None."""
        return jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> RunRecord:
        """Inverse of `to_dict`; null metrics come back as NaN so arithmetic on them stays NaN-aware."""
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [name for name in ("run_id", "strategy", "backbone") if name not in data]
        if missing:
            raise DataError(f"record lacks {', '.join(missing)}; expected a headstart record.json")
        values = {key: value for key, value in data.items() if key in known}
        values["metrics"] = _none_to_nan(values.get("metrics", {}))
        return cls(**values)


def make_run_id(strategy: str, backbone: str, head: str | None, seed: int, *, variant: str | None = None) -> str:
    """Readable id such as `cached-head_resnet18_logreg_s0` or `finetune_resnet18_freeze-none_s0`.

    The id is a pure function of its inputs, so a rerun of the same configuration replaces the earlier record
    (reruns overwrite; they never pile up as `_1`, `_2`). `variant` separates runs that share the other
    fields, e.g. fine-tune freeze modes or image sizes. Characters outside [A-Za-z0-9.-] become '-'.
    """
    parts = [strategy, backbone] + [part for part in (head, variant) if part] + [f"s{int(seed)}"]
    return "_".join(re.sub(r"[^A-Za-z0-9.\-]+", "-", str(part)) for part in parts)


def record_json(record: RunRecord) -> str:
    """The exact text written to record.json (sorted keys, strict JSON, trailing newline)."""
    return json.dumps(record.to_dict(), sort_keys=True, indent=2, allow_nan=False) + "\n"


def write_record(runs_dir: str | os.PathLike, record: RunRecord) -> Path:
    """Write `runs_dir/<run_id>/record.json` atomically (temporary file + rename); returns its path."""
    if record.strategy not in STRATEGIES:
        raise DataError(f"record strategy is {record.strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if not record.created:
        record.created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if not record.versions:
        record.versions = collect_versions()
    run_dir = Path(runs_dir) / record.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    target = run_dir / RECORD_NAME
    write_bytes_atomic(target, record_json(record).encode("utf-8"))
    logger.info("wrote %s", target)
    return target


def read_records(runs_dir: str | os.PathLike) -> list[RunRecord]:
    """Every readable `runs_dir/*/record.json`, sorted by run id; unreadable files are skipped with a warning."""
    runs_dir = Path(runs_dir)
    hint = "run `headstart heads` or `headstart finetune` first"
    if not runs_dir.is_dir():
        raise DataError(f"runs folder {runs_dir} does not exist; expected a folder of run records; {hint}")
    records = []
    for path in sorted(runs_dir.glob(f"*/{RECORD_NAME}")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise DataError("top level is not an object")
            if int(data.get("format_version", 1)) > RECORD_FORMAT_VERSION:
                raise DataError(f"format_version {data['format_version']} is newer than {RECORD_FORMAT_VERSION}")
            records.append(RunRecord.from_dict(data))
        except (OSError, ValueError, TypeError, DataError) as error:
            logger.warning("skipping unreadable record %s: %s", path, one_line(error))
    if not records:
        raise DataError(f"no {RECORD_NAME} under {runs_dir}; {hint}")
    return sorted(records, key=lambda record: record.run_id)


def jsonable(value: Any) -> Any:
    """Recursively convert numpy containers and scalars to JSON types, with non-finite floats as None."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.str_):
        return str(value)
    return value


def _none_to_nan(value: Any) -> Any:
    """Inverse of the NaN -> null mapping, for metric containers (which hold only numbers)."""
    if isinstance(value, dict):
        return {key: _none_to_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_none_to_nan(item) for item in value]
    return float("nan") if value is None else value
