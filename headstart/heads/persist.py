"""Saved heads: each head kind (heads.registry) writes its own tensors to `head.safetensors` and its description to `head.json`.

No pickle, ever: a head someone sent you loads without running any of their code. The tensors go through
safetensors (a header plus raw buffers), or a plain `.npz` read with `allow_pickle=False`; everything else
(kind, hyperparameters, class names, the frozen threshold, the feature set it was trained on) is JSON. head.json
is written last and holds the sha256 of the tensor file, so a torn or damaged pair is refused in one line.

`load_head(path)` returns the estimator `fit` produced, with the same `predict_proba` (the same arrays in the
same dtypes, through the same code). Only kNN's reference rows may be stored narrower: in the dtype of the
feature set they came from (float16 for a default cache), so the head file is never larger than the cache
rows it was fitted on.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from headstart.errors import DataError, one_line
from headstart.heads.registry import get_head, kind_of, names
from headstart.heads.tensor_file import Stored, write_safetensors
from headstart.io import write_bytes_atomic
from headstart.versions import collect_versions

log = logging.getLogger(__name__)

HEAD_JSON = "head.json"
HEAD_TENSORS = "head.safetensors"
HEAD_FORMAT = "headstart-head"
HEAD_FORMAT_VERSION = 1  # bump when a kind's tensors change meaning; readers refuse newer versions
_ADVICE = "rerun `headstart heads` to write it again"


@dataclass
class SavedHead:
    """A head read back from disk: the fitted estimator and what head.json says about it."""

    estimator: object  # the fitted estimator of a registered head kind (heads.registry)
    kind: str  # its kind's name: logreg | linear | mlp | knn | one registered
    classes: list[str]  # class names; the estimator's label i is classes[i]
    threshold: float | dict | None  # frozen on val; None for multi-class (argmax); by finding for multi-label
    feature_set: dict = field(default_factory=dict)  # the spec of the features it was trained on
    info: dict = field(default_factory=dict)  # the whole head.json


def head_kind(estimator: object) -> str:
    """The registered kind name of a fitted head (heads.registry.kind_of)."""
    return kind_of(estimator).name


# --- save ----------------------------------------------------------------------------------------------------

# The feature-set attributes that say how its features were computed (and, for random weights, rebuilt);
# `predict` rebuilds the backbone from these and refuses features computed any other way.
SPEC_ATTRS = ("backbone", "provider", "weights", "weights_sha256", "weights_seed", "random_weights_sha256",
              "preprocessing", "layer", "pool", "dim", "dtype", "fingerprint")


def feature_set_spec(name: str, attrs: dict, *, manifest_hash: str | None = None, cache: str | None = None) -> dict:
    """The head.json `feature_set` block from a cache feature set's attributes (as `FeatureCache` reads them)."""
    spec = {key: attrs[key] for key in SPEC_ATTRS if attrs.get(key) is not None}
    spec.setdefault("layer", "final")
    spec.setdefault("pool", "default")
    return {"name": name, **spec, "manifest_hash": manifest_hash, "cache": cache}



def save_head(folder: str | Path, estimator: object, *, classes: list[str], threshold: float | dict | None,
              feature_set: dict | None = None, extra: dict | None = None) -> Path:
    """Write `folder/head.safetensors`, then `folder/head.json` (both atomically); returns head.json's path.

    `classes` names the estimator's labels 0..C-1; `feature_set` is the spec of the features it was trained on
    (its `dtype` also sets how kNN's reference rows are stored; float32 without one). `extra` (e.g. run_id)
    is added to head.json as is.
    """
    kind = kind_of(estimator).name
    feature_set = dict(feature_set or {})
    arrays, state = get_head(kind).state(estimator, feature_set.get("dtype") or "float32")
    tensors = {name: a if isinstance(a, Stored) else Stored.of(a)
               for name, a in {**arrays, "classes": estimator.classes_}.items()}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sha256, size = write_safetensors(folder / HEAD_TENSORS, tensors, {"format": HEAD_FORMAT, "kind": kind})
    info = {
        "format": HEAD_FORMAT, "format_version": HEAD_FORMAT_VERSION, "head": kind,
        "estimator": type(estimator).__name__, "params": _jsonable_params(estimator.get_params()), "state": state,
        "classes": [str(c) for c in classes], "threshold": _threshold(threshold),
        "n_features": int(estimator.n_features_in_), "feature_set": feature_set,
        "tensors": {"file": HEAD_TENSORS, "sha256": sha256, "bytes": size,
                    "shapes": {name: list(t.array.shape) for name, t in tensors.items()},
                    "dtypes": {name: t.dtype.name for name, t in tensors.items()}},
        "versions": collect_versions(), **(extra or {}),
    }
    target = folder / HEAD_JSON
    write_bytes_atomic(target, (json.dumps(info, indent=2, sort_keys=True, allow_nan=False) + "\n").encode())
    log.debug("saved %s head (%d bytes of tensors) to %s", kind, size, folder)
    return target


def task_head_info(task, estimator: object, policy: dict | None = None) -> dict:
    """What head.json says about the task: `task`, `labels`, `link` (sigmoid for multi-label: one probability
    per finding, never a softmax), and for multi-label the findings left out of training (`untrained`: finding
    -> reason; their probabilities are NaN) and the label policy it was trained under."""
    info = task.describe()
    if task.kind != "multilabel":
        return info
    from headstart.tasks.multilabel import NOT_TRAINED

    probe = np.asarray(estimator.predict_proba(np.zeros((1, int(estimator.n_features_in_)), dtype=np.float32)))
    info["untrained"] = {name: NOT_TRAINED for name, bad in zip(task.names, np.isnan(probe[0])) if bad}
    info["label_policy"] = policy
    return info


def _threshold(value):
    """A frozen threshold as JSON: a number, None, or (multi-label) an object of numbers or None by finding."""
    if isinstance(value, dict):
        return {str(k): None if v is None else float(v) for k, v in value.items()}
    return None if value is None else float(value)


def _jsonable_params(params: dict) -> dict:
    return {k: v for k, v in params.items() if isinstance(v, (str, int, float, bool, type(None)))}


# --- load ----------------------------------------------------------------------------------------------------


def load_head(path: str | Path) -> object:
    """The fitted estimator saved in a run folder (or its head.json); same `predict_proba` as when saved."""
    return read_head(path).estimator


def read_head(path: str | Path) -> SavedHead:
    """Read and check head.json and its tensor file; DataError (one line) for anything missing or damaged."""
    path = Path(path)
    json_path = path / HEAD_JSON if path.is_dir() else path
    if not json_path.is_file():
        raise DataError(f"no {HEAD_JSON} in {json_path.parent}; expected a cached-head run folder written by "
                        f"`headstart heads` (runs from before saved heads have none: {_ADVICE})")
    info = _read_json(json_path)
    kind = info.get("head")
    if info.get("format") != HEAD_FORMAT or not isinstance(kind, str) or kind not in names():
        raise DataError(f"{json_path} is not a headstart head (format {info.get('format')!r}, head {kind!r}); "
                        f"expected format {HEAD_FORMAT!r} and a head of {', '.join(names())}")
    if int(info.get("format_version", 0)) > HEAD_FORMAT_VERSION:
        raise DataError(f"{json_path} has format_version {info['format_version']}, newer than this headstart reads "
                        f"({HEAD_FORMAT_VERSION}); upgrade headstart")
    tensors = _read_tensors(json_path.parent, info)
    head = get_head(kind)
    missing = [n for n in (*head.tensors, "classes") if n not in tensors]
    _require(not missing, f"{kind} head lacks tensor(s) {', '.join(missing)}", json_path)
    classes = [str(c) for c in info.get("classes", [])]
    _require(len(classes) >= 2 and len(tensors["classes"]) <= len(classes),
             f"{len(classes)} class names for {len(tensors['classes'])} fitted classes", json_path)
    try:
        estimator = head.build(dict(info.get("params", {})), tensors, dict(info.get("state", {})),
                               tensors["classes"].astype(np.int64))
    except DataError as exc:
        raise DataError(f"{json_path.parent / HEAD_TENSORS}: {exc}; {_ADVICE}") from None
    except (TypeError, KeyError, ValueError, IndexError) as exc:
        raise DataError(f"{json_path} describes a {kind} head its tensors do not fit ({one_line(exc)}); "
                        f"{_ADVICE}") from None
    return SavedHead(estimator=estimator, kind=kind, classes=classes, threshold=_threshold(info.get("threshold")),
                     feature_set=dict(info.get("feature_set") or {}), info=info)


def _read_json(path: Path) -> dict:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path} cannot be read as JSON ({one_line(exc)}); it is damaged; {_ADVICE}") from None
    if not isinstance(info, dict):
        raise DataError(f"{path} holds {type(info).__name__}, not a JSON object; it is damaged; {_ADVICE}")
    return info


def _read_tensors(folder: Path, info: dict) -> dict[str, np.ndarray]:
    """The tensor file head.json names, its sha256 checked, parsed without pickle (safetensors or npz)."""
    entry = info.get("tensors") if isinstance(info.get("tensors"), dict) else {}
    name = Path(str(entry.get("file") or HEAD_TENSORS)).name  # a bare file name: never outside the run folder
    file = folder / name
    try:
        payload = file.read_bytes()
    except OSError as exc:
        raise DataError(f"{file} cannot be read ({one_line(exc)}); {_ADVICE}") from None
    if hashlib.sha256(payload).hexdigest() != entry.get("sha256"):
        raise DataError(f"{file} is damaged: its sha256 differs from the one {HEAD_JSON} recorded; {_ADVICE}")
    try:
        if file.suffix == ".npz":
            with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
                return {key: npz[key] for key in npz.files}
        from safetensors.numpy import load as from_safetensors

        return from_safetensors(payload)
    except Exception as exc:  # noqa: BLE001 - a bad zip, header or buffer: any parse error means a bad file
        what = "holds pickled objects, which are never loaded" if "pickle" in str(exc).lower() else \
            f"is not a valid {'npz' if file.suffix == '.npz' else 'safetensors'} file ({one_line(exc, limit=80)})"
        raise DataError(f"{file} {what}; expected plain numeric tensors; {_ADVICE}") from None


def _require(ok: bool, message: str, where: Path | None = None) -> None:
    if not ok:
        raise DataError(f"{where}: {message}; {_ADVICE}" if where else message)
