"""Turn run records into the comparison table: one row per configuration, seeds aggregated.

A configuration is a run id without its `_s<seed>` suffix (run ids are pure functions of the configuration, see
`records.make_run_id`), so the seeds of one head or fine-tune collapse into one row. Records made on different
data sets (different `dataset.manifest_hash`) are never mixed: `group_by_dataset` splits them first.

Each metric cell holds the mean and sample standard deviation over seeds (training variability) plus the 95%
bootstrap interval of the lowest seed's run (test-set sampling variability). The two answer different questions,
so neither is folded into the other.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field

import numpy as np

from headstart.evaluation import SELECT_METRICS
from headstart.evaluation.records import RunRecord
from headstart.evaluation.table import aggregate_seeds

logger = logging.getLogger(__name__)

TABLE_METRICS = ("auroc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1")
LOWER_IS_BETTER = tuple(metric for metric, higher in SELECT_METRICS.items() if not higher)
TIMING_KEYS = ("extract_seconds", "train_seconds", "eval_seconds", "images_per_second", "peak_memory_mb")
UNKNOWN_DATASET = "unknown"  # group of records that carry no manifest hash


@dataclass
class Row:
    """One configuration (strategy x backbone x head or fine-tune variant) and its runs, lowest seed first."""

    key: str  # run id without the seed suffix
    strategy: str  # "cached-head" | "finetune"
    backbone: str
    head: str | None  # None for fine-tunes
    runs: list[RunRecord] = field(default_factory=list)

    @property
    def label(self) -> str:
        """What a reader calls this row: `logreg`, `logreg (layer3:gem)` for a backbone's non-default feature set,
        or `fine-tune (freeze none, 64 px)`."""
        policy = label_policy(self.runs[0].config)
        if self.strategy == "cached-head":
            config = self.runs[0].config
            feature_set = str(config.get("feature_set") or "")
            prefix = self.backbone.replace("/", "--") + ":"  # set names: backbones.names.feature_set_name
            name = f"{self.head} ({feature_set[len(prefix):]})" if feature_set.startswith(prefix) else str(self.head)
            name += "".join(f" + {label}" for key, label in (("views", "views"), ("tta", "TTA"))
                            if config.get(key) == "on")  # heads --views/--tta
            return name + (f" [{policy}]" if policy else "")
        config = self.runs[0].config
        details = [f"freeze {config['freeze']}"] if config.get("freeze") else []
        if config.get("image_size"):
            details.append(f"{config['image_size']} px")
        if config.get("train_size"):
            details.append(f"train {config['train_size']}")
        return "fine-tune" + (f" ({', '.join(details)})" if details else "") + (f" [{policy}]" if policy else "")

    @property
    def reference(self) -> RunRecord:
        """The run whose intervals, curves and predictions represent the row: the lowest seed."""
        return self.runs[0]

    def mean(self, split: str, metric: str) -> float:
        return aggregate_seeds([run.metrics.get(split, {}).get(metric) for run in self.runs])[0]

    def mean_timing(self, key: str) -> float:
        return aggregate_seeds([as_number(run.timing.get(key)) for run in self.runs])[0]


@dataclass
class DatasetGroup:
    """The records of one data set, identified by its manifest hash."""

    manifest_hash: str
    records: list[RunRecord]
    curves: list[dict] = field(default_factory=list)  # curve.json documents of this data set

    @property
    def tag(self) -> str:
        """Short name for file names and headings (first 8 hex digits of the hash)."""
        return self.manifest_hash[:8]

    @property
    def classes(self) -> list[str]:
        datasets = [r.dataset for r in self.records] + [c["dataset"] for c in self.curves]
        # a multi-label record names its findings in `labels` (its classes, if any, are the 0/1 of each finding)
        return list(datasets[0].get("labels") or datasets[0].get("classes", [])) if datasets else []

    @property
    def sources(self) -> list[str]:
        """Where the data came from (data folders and caches named in records and curves), for the report header."""
        datasets = [r.dataset for r in self.records] + [c["dataset"] for c in self.curves]
        return sorted({str(d.get(k)) for d in datasets for k in ("data", "cache") if d.get(k)})


def label_policy(config: dict) -> str:
    """A multi-label run's uncertainty policy and blank rule, e.g. `U-Ones, blank negative` (empty when the config
    names none: single-label runs, whose fine-tune config still carries the unused --uncertain / --blank
    defaults), so runs under U-Ones and U-Zeros read apart in every table."""
    policy = config.get("label_policy")
    if not isinstance(policy, dict):
        return ""
    uncertain, blank = policy.get("uncertain"), policy.get("blank")
    parts = [f"U-{str(uncertain).capitalize()}"] if isinstance(uncertain, str) and uncertain else []
    if policy.get("uncertain_per_label"):
        parts.append(", ".join(f"{name} U-{str(rule).capitalize()}"
                               for name, rule in sorted(policy["uncertain_per_label"].items())))
    if isinstance(blank, str) and blank:
        parts.append(f"blank {blank}")
    return ", ".join(parts)


def group_by_dataset(records: list[RunRecord]) -> list[DatasetGroup]:
    """Split records by `dataset.manifest_hash`, largest group first; logs when there is more than one."""
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(str(record.dataset.get("manifest_hash") or UNKNOWN_DATASET), []).append(record)
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    if len(ordered) > 1:
        logger.warning(
            "records come from %d different data sets (manifest hashes %s); reporting each in its own section, "
            "never compared across data sets", len(ordered), ", ".join(h[:8] for h, _ in ordered),
        )
    return [DatasetGroup(manifest_hash=h, records=rs) for h, rs in ordered]


def config_key(record: RunRecord) -> str:
    """The run id without its trailing `_s<seed>`: every seed of one configuration shares it."""
    return re.sub(r"_s-?\d+$", "", record.run_id)


def build_rows(records: list[RunRecord]) -> list[Row]:
    """Group records into rows, ordered by backbone, then cached heads before fine-tunes, then label."""
    rows: dict[str, Row] = {}
    for record in records:
        key = config_key(record)
        row = rows.setdefault(key, Row(key=key, strategy=record.strategy, backbone=record.backbone, head=record.head))
        row.runs.append(record)
    for row in rows.values():
        row.runs.sort(key=lambda run: (run.seed, run.run_id))
    return sorted(rows.values(), key=lambda r: (r.backbone, r.strategy != "cached-head", r.label))


def row_summary(row: Row) -> dict:
    """JSON-ready numbers of one row (see the module docstring for what mean, std and ci mean)."""
    reference = row.reference
    test = {}
    for metric in TABLE_METRICS:
        mean, std = aggregate_seeds([run.metrics.get("test", {}).get(metric) for run in row.runs])
        test[metric] = {"mean": mean, "std": std, "ci": reference.metrics.get("test", {}).get(f"{metric}_ci")}
    timing = {}
    for key in TIMING_KEYS:
        mean, std = aggregate_seeds([as_number(run.timing.get(key)) for run in row.runs])
        timing[key] = mean
        if key == "train_seconds":
            timing["train_seconds_std"] = std
    return {
        "key": row.key,
        "label": row.label,
        "strategy": row.strategy,
        "backbone": row.backbone,
        "head": row.head,
        "seeds": [run.seed for run in row.runs],
        "run_ids": [run.run_id for run in row.runs],
        "ci_run_id": reference.run_id,
        "thresholds": [run.threshold for run in row.runs],
        "val": {metric: row.mean("val", metric) for metric in TABLE_METRICS},
        "test": test,
        "timing": timing,
        "device": reference.timing.get("device"),
        "weights": _weights(reference),
    }


def _weights(record: RunRecord) -> str | None:
    """The weights tag a run used (heads copy it from the cache; fine-tunes record the resolved tag)."""
    config = record.config
    return config.get("weights_tag") or config.get("weights") or None


def best_cached_head(rows: list[Row], *, backbone: str, select_metric: str) -> Row | None:
    """The cached-head row of `backbone` with the highest mean validation `select_metric` (NaN never wins)."""
    candidates = [row for row in rows if row.strategy == "cached-head" and row.backbone == backbone]
    return best_by_val(candidates, select_metric=select_metric)


def best_by_val(candidates: list[Row], *, select_metric: str) -> Row | None:
    """The row with the best mean validation `select_metric` (NaN never wins; the first row when all are NaN)."""
    scored = [(row.mean("val", select_metric), row) for row in candidates]
    scored = [(value, row) for value, row in scored if not math.isnan(value)]
    if not scored:
        return candidates[0] if candidates else None
    sign = -1.0 if select_metric in LOWER_IS_BETTER else 1.0
    return max(scored, key=lambda item: sign * item[0])[1]


def break_even(rows: list[Row]) -> list[dict]:
    """Cost of the cached path against fine-tuning, per backbone and fine-tune configuration.

    With E = the backbone's one-time extraction seconds, H = the mean `train_seconds` of one cached-head run
    and F = the mean `train_seconds` of one fine-tune (all as recorded; eval time excluded from both):
    - `heads_per_finetune` = F / H: head runs that fit in the training time of one fine-tune;
    - `heads_within_one_finetune` = floor((F - E) / H), at least 0: head runs that fit in one fine-tune's
      time once the extraction has been paid;
    - `break_even_experiments` = the smallest k with E + k*H <= k*F, i.e. ceil(E / (F - H)): after this many
      experiments, running each as a cached head instead of a fine-tune has repaid the extraction
      (None when F <= H: the cache never pays for itself).
    """
    out = []
    for backbone in sorted({row.backbone for row in rows}):
        heads = [run for row in rows if row.backbone == backbone and row.strategy == "cached-head" for run in row.runs]
        finetunes = [row for row in rows if row.backbone == backbone and row.strategy == "finetune"]
        if not heads or not finetunes:
            continue
        head_seconds = [as_number(run.timing.get("train_seconds")) for run in heads]
        extract = [as_number(run.timing.get("extract_seconds")) for run in heads]
        h = float(np.nanmean(head_seconds)) if not all(math.isnan(v) for v in head_seconds) else math.nan
        e = float(np.nanmedian(extract)) if not all(math.isnan(v) for v in extract) else math.nan
        for row in finetunes:
            f = aggregate_seeds([as_number(run.timing.get("train_seconds")) for run in row.runs])[0]
            out.append({
                "backbone": backbone,
                "finetune": row.key,
                "finetune_label": row.label,
                "extract_seconds": e,
                "head_train_seconds_mean": h,
                "head_runs": len(heads),
                "head_runs_total_seconds": float(np.nansum(head_seconds)),
                "finetune_train_seconds": f,
                "heads_per_finetune": f / h if h > 0 else math.nan,
                "heads_within_one_finetune": max(0, math.floor((f - e) / h)) if h > 0 and all_finite(f, e) else None,
                "break_even_experiments": _break_even_k(e=e, h=h, f=f),
            })
    return out


def _break_even_k(*, e: float, h: float, f: float) -> int | None:
    """Smallest k >= 1 with e + k*h <= k*f, or None when it does not exist (or an input is missing)."""
    if not all_finite(e, h, f) or f <= h:
        return None
    return max(1, math.ceil(e / (f - h)))


def all_finite(*values: object) -> bool:
    """True when every value is a real, finite number (None, NaN and text are not)."""
    return all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(v)
               for v in values)


def as_number(value: object) -> float:
    """A timing value as float, NaN when absent or not a number (records from older versions lack keys)."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return float(value)
    return math.nan
