"""The compact console summary of a heads run: one row per feature set x head, mean ± std over seeds."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from headstart.evaluation.records import RunRecord
from headstart.evaluation.table import aggregate_seeds, fmt_ci, fmt_mean_std, format_table

COLUMNS = [
    ("feature_set", "feature set"), ("head", "head"), ("config", "selected"), ("val_auroc", "val AUROC"),
    ("test_auroc", "test AUROC [95% CI]"), ("balanced_accuracy", "bal. acc"), ("sens_spec", "sens / spec"),
    ("train_seconds", "train s"),
]


def summary_rows(records: list[RunRecord]) -> list[dict]:
    """Rows for `format_table`: one seed shows the test CI, several show mean ± std over seeds."""
    groups: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for record in records:
        groups[(record.config.get("feature_set", record.backbone), record.head or "")].append(record)
    rows = []
    for (feature_set, head), runs in groups.items():
        def stat(split: str, name: str) -> str:
            mean, std = aggregate_seeds([_metric(r.metrics[split], name) for r in runs])
            return fmt_mean_std(mean, std)

        test = runs[0].metrics["test"]
        single = len(runs) == 1
        rows.append({
            "feature_set": feature_set,
            "head": head + ("" if single else f" ×{len(runs)}"),
            "config": _short_config(runs[0]) if single else "per seed",
            "val_auroc": stat("val", "auroc"),
            "test_auroc": fmt_ci(test.get("auroc"), test.get("auroc_ci")) if single else stat("test", "auroc"),
            "balanced_accuracy": stat("test", "balanced_accuracy"),
            "sens_spec": f"{stat('test', 'sensitivity')} / {stat('test', 'specificity')}",
            "train_seconds": fmt_mean_std(*aggregate_seeds([r.timing.get("train_seconds") for r in runs]), digits=2),
        })
    return rows


def _metric(split: dict, name: str) -> float | None:
    """A split's metric; for a multi-label record without it, the mean over its findings (sensitivity and
    specificity at each finding's frozen threshold) that have it."""
    if name in split or not isinstance(split.get("per_label"), dict):
        return split.get(name)
    values = [v.get(name) for v in split["per_label"].values() if isinstance(v.get(name), (int, float))]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else None


def summary_table(records: list[RunRecord]) -> str:
    return format_table(summary_rows(records), COLUMNS)


def _short_config(record: RunRecord) -> str:
    """The swept hyperparameters of the selected config, read from the record's sweep scores (any head kind)."""
    scores = record.config.get("sweep_scores") or [{}]
    keys = [k for k in scores[0] if k != record.config.get("select_metric")]
    short = {"weight_decay": "wd"}
    return " ".join(f"{short.get(k, k)}={record.config[k]:g}" for k in keys
                    if isinstance(record.config.get(k), (int, float)))
