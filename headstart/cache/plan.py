"""What an extraction asks of a cache file (`CacheRequest`: the sample table, the feature sets, --overwrite), and
the planner, which decides from what is at the path what the extraction does.

The request is plain data, validated once on construction, so the planner, the stager and the publisher trust it.
`plan` is pure. It reads no file and writes none, so every decision (new file, add sets, re-split only, already
done, or a refusal with a typed reason) is tested as a table in `tests/cache/test_plan.py`. The writer reads the
header and the staging state, calls `plan`, raises `Plan.error()` on a refusal and carries out the rest.

--overwrite replaces feature sets, a staged extraction, or a whole file only when that file is recognisably a
headstart cache. Another tool's HDF5 file, or a file that cannot be read as HDF5 at all, is never replaced.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

import numpy as np

from headstart.cache.fingerprint import FINGERPRINT_VERSION, fingerprint_differences, part_digests, set_fingerprint
from headstart.cache.header import CacheHeader, FileKind
from headstart.cache.schema import FEATURE_DTYPES, SET_NAME_RE, staging_dir
from headstart.cache.staging import staged_conflict
from headstart.data.types import SPLITS
from headstart.errors import CacheError, CacheMismatchError, ConfigError


@dataclass
class SamplesTable:
    """The rows of the cache: one per image, in a fixed order that every feature set shares."""

    ids: list[str]  # unique sample ids (path relative to DATA, or "train/00012" for npz rows)
    labels: list[int]  # index into `classes`
    splits: list[str]  # "train" | "val" | "test"
    groups: list[str]  # patient id, "" when unknown
    classes: list[str]  # class names; `labels` index into this
    manifest_hash: str  # identifies images, labels and splits; part of every fingerprint
    attrs: dict = field(default_factory=dict)  # extra JSON-able root metadata (source, split_config, duplicates)
    task: str = ""  # binary | multiclass | multilabel (root attr `task`); "" for tables made before tasks
    label_matrix: np.ndarray | None = None  # multilabel: (N, L) int8 raw codes, columns named by `classes`

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class FeatureSetSpec:
    """One requested feature set: what computes it and how it is stored."""

    name: str  # HDF5 name under /features: backbones.names.feature_set_name(backbone, layer, pool)
    backbone: str  # registry name with its provider prefix ("resnet18", "timm:resnet18")
    weights_tag: str  # "imagenet:<enum>", "random" or "file:<name>"
    weights_sha256: str  # of the weights file; "" for random weights (their seed and state digest are in `parts`)
    preprocessing: dict  # Preprocessing.to_dict()
    dim: int  # feature dimension D
    fingerprint: str  # compute_fingerprint(...) of the fields above plus the table's manifest hash
    dtype: str = "float16"  # storage dtype: float16 halves the file; float32 on request
    parts: dict = field(default_factory=dict)  # provider parts, layer/pool, engine, precision, random state (hashed)
    attrs: dict = field(default_factory=dict)  # descriptive scalar attributes (layer, pool, provider...), not hashed
    version: int = FINGERPRINT_VERSION  # the fingerprint version; older only when keeping an old set as it is

    def identity(self) -> dict:
        """The attributes the fingerprint is computed from, under their stored names (see `set_fingerprint`).
        `fingerprint_parts` is stored only when there are parts, as sets made before them have none; the per-part
        digests let `verify` name a part whose attribute changed after extraction."""
        identity = {"backbone": self.backbone, "weights": self.weights_tag, "weights_sha256": self.weights_sha256,
                    "preprocessing": self.preprocessing, "fingerprint_version": self.version}
        if self.parts:
            identity["fingerprint_parts"] = self.parts
        identity["fingerprint_digests"] = part_digests(identity)
        return identity

    def staged_entry(self) -> dict:
        """How the staging area's state.json describes this set; staged parts are resumed only when it matches."""
        return {"fingerprint": self.fingerprint, "dim": self.dim, "dtype": self.dtype}


@dataclass(frozen=True)
class CacheRequest:
    """One extraction's request of the cache at `path`. Construction checks the table and the specs."""

    path: Path
    table: SamplesTable
    specs: dict[str, FeatureSetSpec]  # by set name, in request order
    overwrite: bool = False  # replace sets or a headstart cache made for another request (never a foreign file)

    @classmethod
    def of(cls, path: str | Path, table: SamplesTable, specs: list[FeatureSetSpec], *,
           overwrite: bool = False) -> "CacheRequest":
        _check_table(table)
        _check_specs(specs, table)
        return cls(Path(path), table, {spec.name: spec for spec in specs}, overwrite)


def table_problems(*, ids: Sequence, labels: Sequence, splits: Sequence, groups: Sequence, classes: Sequence,
                   task: str = "", label_matrix: np.ndarray | None = None) -> list[str]:
    """What is wrong with a sample table, one line each (empty: nothing): the one rule that the writer, `verify`
    and `write_features` apply (the first two to what they hold, the last to a user's arrays)."""
    n = len(ids)
    wrong = {k: len(v) for k, v in (("labels", labels), ("splits", splits), ("groups", groups)) if len(v) != n}
    if wrong:
        return [f"{n} ids but {', '.join(f'{v} {k}' for k, v in wrong.items())}; expected one of each per id"]
    problems = []
    repeats = sorted(i for i, count in Counter(str(i) for i in ids).items() if count > 1)
    if repeats:
        problems.append(f"sample ids repeat ({', '.join(repeats[:3])}); expected unique ids")
    unknown = sorted({str(s) for s in splits} - set(SPLITS))
    if unknown:
        problems.append(f"unknown split names {unknown}; expected each split to be one of {', '.join(SPLITS)}")
    if task == "multilabel":
        m = label_matrix
        if m is None or m.shape != (n, len(classes)):
            problems.append(f"the label matrix is {None if m is None else m.shape}; expected ({n}, {len(classes)})")
        elif not np.isin(m, (1, 0, -1, -2)).all():
            problems.append("the label matrix holds values other than the codes 1, 0, -1, -2")
    elif n and (min(labels) < 0 or max(labels) >= len(classes)):
        problems.append(f"labels span {min(labels)}..{max(labels)}; expected indices 0..{len(classes) - 1} into "
                        f"classes {list(classes)}")
    return problems


def _check_table(t: SamplesTable) -> None:
    problems = table_problems(ids=t.ids, labels=t.labels, splits=t.splits, groups=t.groups, classes=t.classes,
                              task=t.task, label_matrix=t.label_matrix)
    if t.task == "multilabel" and not problems and (t.label_matrix.dtype != np.int8 or (np.asarray(t.labels) != -1)
                                                    .any()):
        problems.append("a multilabel table needs an int8 label_matrix and labels -1")
    if not t.ids or problems:
        raise ValueError(problems[0] if problems else "the samples table is empty")


def _check_specs(specs: list[FeatureSetSpec], table: SamplesTable) -> None:
    if not specs:
        raise ValueError("no feature sets requested")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"feature set names repeat: {names}; give each -b a distinct name")
    for spec in specs:
        if not SET_NAME_RE.match(spec.name):
            raise ConfigError(f"feature set name {spec.name!r} is not allowed; use letters, digits, '_', '-', '.', "
                              "':' or '+' (no '/')")
        if spec.dtype not in FEATURE_DTYPES:
            raise ConfigError(f"feature dtype {spec.dtype!r} is not supported; use one of {', '.join(FEATURE_DTYPES)}")
        if spec.dim <= 0:
            raise ValueError(f"feature set {spec.name!r} has dim {spec.dim}")
        if spec.fingerprint != set_fingerprint(spec.identity(), table.manifest_hash):
            raise ValueError(
                f"feature set {spec.name!r}: fingerprint does not match its fields and the table's manifest hash"
            )


class Action(Enum):
    NEW_FILE = "new file"  # build the file from the table; nothing existing is kept
    ADD_SETS = "add sets"  # same table: copy the kept sets, add the todo sets
    RESPLIT = "re-split"  # same images, other splits: new table, kept sets re-stamped, todo sets (if any) added
    DONE = "already done"  # every requested set is complete and matches; the file is left as it is
    REFUSE = "refuse"


class Refusal(Enum):
    OUTPUT_IS_FOLDER = "output is a folder"
    UNREADABLE = "not readable as HDF5"  # junk, empty or truncated: never replaced, even with --overwrite
    NOT_A_CACHE = "another tool's HDF5 file"  # never replaced, even with --overwrite
    NEWER = "made by a newer headstart"  # never replaced, even with --overwrite
    DAMAGED = "damaged headstart cache"  # replaced with --overwrite
    OTHER_DATA = "built from other data or splits"
    SET_FINGERPRINT = "feature set made by another backbone, weights or preprocessing"
    SET_DTYPE = "feature set stored in another dtype"
    SET_ATTRS_MISSING = "feature set lacks its fingerprint attributes"
    STAGED_OTHER_DATA = "partial extraction for other data or splits"
    STAGED_SET = "partial extraction of a set made for another request"


# Refusals where the file is fine but was made for another request; the rest say the file itself is unusable.
MISMATCHES = frozenset({Refusal.OTHER_DATA, Refusal.SET_FINGERPRINT, Refusal.SET_DTYPE, Refusal.STAGED_OTHER_DATA,
                        Refusal.STAGED_SET})
OVERWRITE_HINT = "pass --overwrite to replace it, or -b with another name"
STAGED_HINT = "rerun the original command to finish it, or pass --overwrite to discard it"


@dataclass(frozen=True)
class Plan:
    """What one extraction will do to the cache file and its staging area."""

    action: Action
    todo: tuple[str, ...] = ()  # sets to extract, in request order
    keep: tuple[str, ...] = ()  # existing sets copied unchanged into the new file
    restamp: dict[str, str] = field(default_factory=dict)  # RESPLIT: kept set -> its fingerprint under new splits
    discard_staging: bool = False  # --overwrite drops batches staged for another request
    refusal: Refusal | None = None
    message: str = ""  # the one-line refusal
    notes: tuple[str, ...] = ()  # warnings to log: what --overwrite replaces or drops

    def error(self) -> CacheError | None:
        """The exception a refused plan raises (None when accepted): typed by `refusal`, never by its text."""
        if self.refusal is None:
            return None
        return (CacheMismatchError if self.refusal in MISMATCHES else CacheError)(self.message)


def refuse(reason: Refusal, message: str) -> Plan:
    return Plan(Action.REFUSE, refusal=reason, message=message)


def plan(existing: CacheHeader, request: CacheRequest, staged: dict | None = None) -> Plan:
    """Decide from the header of what is at the path, the request and the staging state.json (None: none)."""
    decided = _plan_file(existing, request)
    if decided.refusal is not None or not decided.todo:
        return decided  # nothing will be staged, so staged batches cannot conflict (DONE drops them)
    table = request.table
    wanted = {name: request.specs[name].staged_entry() for name in decided.todo}
    conflict = staged_conflict(staged, wanted, n_rows=len(table), manifest_hash=table.manifest_hash)
    if conflict is None:
        return decided
    folder = staging_dir(request.path)
    if request.overwrite:
        return replace(decided, discard_staging=True,
                       notes=(*decided.notes, f"--overwrite: discarding the partial extraction in {folder}"))
    name, staged = conflict
    if name is None:
        return refuse(Refusal.STAGED_OTHER_DATA,
                      f"{folder} holds a partial extraction for a different data set or splits; {STAGED_HINT}")
    spec = request.specs[name]
    return refuse(Refusal.STAGED_SET,
                  f"a partial extraction of feature set '{spec.name}' in {folder} has fingerprint "
                  f"{str(staged.get('fingerprint'))[:12]}... ({staged.get('dtype')}), this request "
                  f"has {spec.fingerprint[:12]}... ({spec.dtype}); {STAGED_HINT}")


def _plan_file(existing: CacheHeader, request: CacheRequest) -> Plan:
    path, kind = request.path, existing.kind
    everything = tuple(request.specs)
    if kind is FileKind.MISSING:
        return Plan(Action.NEW_FILE, everything)
    if kind is FileKind.FOLDER:
        return refuse(Refusal.OUTPUT_IS_FOLDER,
                      f"output {path} is a folder; expected a cache file path such as {path}/features.h5")
    if kind is FileKind.UNREADABLE:
        return refuse(Refusal.UNREADABLE, f"{existing.found}; extract replaces only a file it can read as a "
                                          f"headstart cache: move or delete it if it is yours to lose, or choose "
                                          f"another -o path")
    if kind is FileKind.FOREIGN:
        return refuse(Refusal.NOT_A_CACHE,
                      f"{existing.found}; extract never replaces another tool's file: choose another -o path")
    if kind is FileKind.NEWER:
        return refuse(Refusal.NEWER, f"{existing.found}; upgrade headstart, or choose another -o path")
    if kind is FileKind.DAMAGED:
        if not request.overwrite:
            return refuse(Refusal.DAMAGED, f"{existing.found}; pass --overwrite to replace it, or choose another "
                                           f"-o path")
        return Plan(Action.NEW_FILE, everything, notes=(f"--overwrite: replacing a damaged cache ({existing.found})",))
    if existing.root_attrs.get("manifest_hash") == request.table.manifest_hash:
        return _plan_same_table(existing, request)
    if not request.overwrite and _same_images(existing, request):
        return _plan_resplit(existing, request)
    if not request.overwrite:
        return refuse(Refusal.OTHER_DATA,
                      f"{path} was built from a different data set or splits (manifest "
                      f"{str(existing.root_attrs.get('manifest_hash'))[:12]}..., this request "
                      f"{request.table.manifest_hash[:12]}...); use another -o path or --overwrite to rebuild it")
    notes = (f"--overwrite: rebuilding {path}, dropping feature sets {', '.join(existing.feature_sets)} built from "
             f"other data",) if existing.feature_sets else ()
    return Plan(Action.NEW_FILE, everything, notes=notes)


def _plan_same_table(existing: CacheHeader, request: CacheRequest) -> Plan:
    """Same sample table: extract what is missing, incomplete or (with --overwrite) different; keep the rest."""
    todo = []
    for name, spec in request.specs.items():
        have = existing.feature_sets.get(name)
        if have is None or request.overwrite or not have.get("complete"):
            todo.append(name)
            continue
        refused = _differs(request, spec, have, have.get("fingerprint"))
        if refused:
            return refused
    keep = tuple(name for name in existing.feature_sets if name not in todo)
    return Plan(Action.ADD_SETS if todo else Action.DONE, tuple(todo), keep)


def _plan_resplit(existing: CacheHeader, request: CacheRequest) -> Plan:
    """Same images, labels and groups, other splits: splits are metadata, so no feature is recomputed.

    Every complete set is kept and re-stamped with its fingerprint under the new manifest (computed from its own
    attributes, exactly as `verify` recomputes it); the published file carries the new /samples/split.
    """
    restamp = {}
    for name, have in existing.feature_sets.items():
        if not have.get("complete"):
            continue
        try:
            restamp[name] = set_fingerprint(have, request.table.manifest_hash)
        except (KeyError, TypeError, ValueError):
            return refuse(Refusal.SET_ATTRS_MISSING,
                          f"feature set '{name}' in {request.path} lacks the attributes its fingerprint is computed "
                          f"from; run `headstart cache verify`, or pass --overwrite")
    for name, spec in request.specs.items():
        refused = _differs(request, spec, existing.feature_sets[name], restamp[name]) if name in restamp else None
        if refused:
            return refused
    todo = tuple(name for name in request.specs if name not in restamp)
    return Plan(Action.RESPLIT, todo, keep=tuple(restamp), restamp=restamp)


def _differs(request: CacheRequest, spec: FeatureSetSpec, have: dict, fingerprint: str | None) -> Plan | None:
    """The refusal when a complete existing set (with `fingerprint` under this request's table) is not `spec`."""
    where = f"feature set '{spec.name}' in {request.path}"
    if fingerprint != spec.fingerprint:
        differs = "; ".join(fingerprint_differences(have, spec.identity())) or "the stored fingerprint attribute"
        return refuse(Refusal.SET_FINGERPRINT,
                      f"{where} was computed differently (fingerprint {str(fingerprint)[:12]}..., this request "
                      f"{spec.fingerprint[:12]}...); {OVERWRITE_HINT}; what differs: {differs}")
    if have.get("dtype") != spec.dtype:
        return refuse(Refusal.SET_DTYPE,
                      f"{where} is stored as {have.get('dtype')}, this request asks for {spec.dtype}; {OVERWRITE_HINT}")
    return None


def _same_images(existing: CacheHeader, request: CacheRequest) -> bool:
    """True when only the split column differs: same ids in the same order, same labels, groups and classes."""
    t = request.table
    return (list(existing.classes) == list(t.classes) and list(existing.ids) == list(t.ids)
            and np.array_equal(existing.labels, np.asarray(t.labels)) and list(existing.groups) == list(t.groups))
