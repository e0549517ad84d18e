"""Paired tests between the best cached head and each fine-tune of the same backbone.

Both runs must have scored the same test images: predictions are aligned by image id, and a pair whose id sets
or labels disagree is skipped with a note rather than tested on a silently mismatched pairing. The runs compared
are each row's lowest-seed run, the one whose intervals the table shows.
"""

from __future__ import annotations

import logging

import numpy as np

from headstart.errors import DataError, one_line
from headstart.evaluation.metrics import as_proba
from headstart.evaluation.paired import delong_test, mcnemar_test
from headstart.evaluation.records import RunRecord
from headstart.evaluation.report.multilabel_paired import compare_multilabel, is_multilabel
from headstart.evaluation.report.pairing import id_order, paired_groups
from headstart.evaluation.report.summary import Row, best_cached_head
from headstart.tasks.factory import task_for_proba

logger = logging.getLogger(__name__)


def paired_comparisons(rows: list[Row], *, select_metric: str) -> list[dict]:
    """One entry per (backbone, fine-tune row) that has a cached head to compare with.

    Each entry names both runs and holds `n`, `delong` (AUROC, binary only), `mcnemar` (accuracy at each
    run's own frozen threshold) and `note` (why a test was skipped, else None).
    """
    out = []
    for backbone in sorted({row.backbone for row in rows}):
        best = best_cached_head(rows, backbone=backbone, select_metric=select_metric)
        if best is None:
            continue
        for finetune in (row for row in rows if row.backbone == backbone and row.strategy == "finetune"):
            out.append(compare_runs(best.reference, finetune.reference) | {
                "backbone": backbone, "a_label": best.label, "b_label": finetune.label,
                "selected_by": f"val {select_metric}",
            })
    return out


def compare_runs(a: RunRecord, b: RunRecord) -> dict:
    """DeLong and McNemar for two runs on their shared test images (a minus b for differences); multi-label runs
    get `compare_multilabel`'s per-finding tests instead."""
    if is_multilabel(a) or is_multilabel(b):  # per-finding DeLong with Holm, and the macro-AUROC bootstrap
        return compare_multilabel(a, b)
    result = {"a": a.run_id, "b": b.run_id, "n": 0, "delong": None, "mcnemar": None, "note": None}
    try:
        y, proba_a, proba_b = aligned_test_predictions(a, b)
    except (DataError, TypeError, ValueError) as error:  # malformed predictions: skip this pair, say why
        logger.warning("paired tests %s vs %s skipped: %s", a.run_id, b.run_id, error)
        return result | {"note": one_line(error)}
    result["n"] = int(y.size)
    task = task_for_proba(proba_a)
    result["mcnemar"] = mcnemar_test(y, task.predict(proba_a, a.threshold), task.predict(proba_b, b.threshold))
    if task.positive_scores(proba_a) is not None:
        result["delong"] = delong_test(y, task.positive_scores(proba_a), task.positive_scores(proba_b),
                                     groups=paired_groups(a, b))  # patients from the records (older: none)
    else:
        result["note"] = f"DeLong skipped: {proba_a.shape[1]} classes; it compares binary AUROCs"
    return result


def aligned_test_predictions(a: RunRecord, b: RunRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and (n, C) probabilities of both runs, in the order of a's test ids; DataError if not pairable."""
    ids_a, y_a, proba_a = _test_predictions(a)
    ids_b, y_b, proba_b = _test_predictions(b)
    order = id_order(ids_a, ids_b, a, b)
    y_b, proba_b = y_b[order], proba_b[order]
    if not np.array_equal(y_a, y_b):
        raise DataError(f"{a.run_id} and {b.run_id} disagree on {int(np.sum(y_a != y_b))} test labels; "
                        "expected identical labels per image id; check that both runs used the same data")
    if proba_a.shape[1] != proba_b.shape[1]:
        raise DataError(f"{a.run_id} has {proba_a.shape[1]} classes and {b.run_id} {proba_b.shape[1]}; "
                        "expected the same classes")
    return y_a, proba_a, proba_b


def _test_predictions(record: RunRecord) -> tuple[list[str], np.ndarray, np.ndarray]:
    test = record.predictions.get("test") or {}
    if not all(key in test for key in ("ids", "y_true", "proba")):
        raise DataError(f"{record.run_id} holds no test predictions; expected predictions.test.ids/y_true/proba")
    ids = [str(image_id) for image_id in test["ids"]]
    y = np.asarray(test["y_true"], dtype=np.int64)
    if y.shape != (len(ids),):
        raise DataError(f"{record.run_id} has {len(ids)} test ids and {y.size} labels; expected equal counts")
    return ids, y, as_proba(np.asarray(test["proba"], dtype=np.float64), n=len(ids))
