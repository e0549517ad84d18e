"""Paired tests of two multi-label runs on the same test images: DeLong per finding with a Holm correction across
the findings, and a paired bootstrap of the macro-AUROC difference.

Each finding is scored on the images whose label both runs scored (the `mask` of `predictions.test`), so an
uncertain or unknown label never enters a test. A finding with one class among those images has no AUROC: it is
reported as "n/a (one class)" and left out of the Holm family and of the macro mean, never dropped silently.
Where a record holds the patients (`predictions.test.groups`), DeLong is the clustered one (Obuchowski) and the
bootstrap resamples whole patients.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from headstart.errors import DataError, one_line
from headstart.evaluation.paired import delong_test, holm_adjust, paired_bootstrap_macro
from headstart.evaluation.records import RunRecord
from headstart.evaluation.report.pairing import id_order, paired_groups

logger = logging.getLogger(__name__)

ONE_CLASS = "n/a (one class)"  # what the report shows for a finding with one class among the scored images
SIGNIFICANCE = 0.05  # Holm-adjusted p below this names a finding as different
N_BOOT = 1000  # resamples of the macro-AUROC bootstrap
BOOT_SEED = 0  # fixed: the same records always give the same report


def is_multilabel(record: RunRecord) -> bool:
    """True for a record of a multi-label task (`dataset.task`, or (N, L) test labels in older drafts)."""
    if record.dataset.get("task"):
        return record.dataset.get("task") == "multilabel"
    y = (record.predictions.get("test") or {}).get("y_true")
    return y is not None and np.ndim(y) == 2


def findings(record: RunRecord) -> list[str]:
    """The finding names, in the column order of the record's probabilities."""
    names = record.dataset.get("labels") or list((record.metrics.get("test") or {}).get("per_label") or {})
    return [str(name) for name in names]


@dataclass
class LabelledTest:
    """One run's multi-label test outputs: (n, L) labels, scored-label mask and probabilities, per image id."""

    ids: list[str]
    y: np.ndarray
    mask: np.ndarray
    proba: np.ndarray
    groups: list[str] | None = None  # patient per image, set when two runs are paired


def labelled_test(record: RunRecord) -> LabelledTest:
    """`predictions.test` of a multi-label record; DataError naming what is missing or misshapen."""
    test = record.predictions.get("test") or {}
    if not all(key in test for key in ("ids", "y_true", "proba")):
        raise DataError(f"{record.run_id} holds no test predictions; expected predictions.test.ids/y_true/proba")
    ids = [str(image_id) for image_id in test["ids"]]
    y = np.asarray(test["y_true"], dtype=np.float64)
    proba = np.asarray(test["proba"], dtype=np.float64)
    mask = np.asarray(test["mask"], dtype=bool) if test.get("mask") is not None else np.ones(y.shape, dtype=bool)
    if y.ndim != 2 or y.shape[0] != len(ids) or proba.shape != y.shape or mask.shape != y.shape:
        raise DataError(f"{record.run_id} has {len(ids)} test ids, labels {y.shape}, probabilities {proba.shape} "
                        f"and mask {mask.shape}; expected (n, L) arrays for n ids")
    mask = mask & np.isin(y, (0, 1))  # a label outside 0/1 (a raw uncertain or blank code) is never scored
    return LabelledTest(ids=ids, y=np.where(mask, y, 0).astype(np.int64), mask=mask, proba=proba)


def aligned(a: RunRecord, b: RunRecord) -> tuple[LabelledTest, np.ndarray]:
    """a's test outputs (mask = labels both runs scored) and b's probabilities in a's image order."""
    out_a, out_b = labelled_test(a), labelled_test(b)
    if findings(a) != findings(b) or out_a.y.shape[1] != out_b.y.shape[1]:
        raise DataError(f"{a.run_id} scores findings {findings(a)} and {b.run_id} {findings(b)}; expected the "
                        "same findings in the same order")
    order = id_order(out_a.ids, out_b.ids, a, b)
    mask = out_a.mask & out_b.mask[order]
    disagree = int(np.sum(mask & (out_a.y != out_b.y[order])))
    if disagree:
        raise DataError(f"{a.run_id} and {b.run_id} disagree on {disagree} scored test labels; expected identical "
                        "labels per image id; check that both runs used the same data and --blank rule")
    return (LabelledTest(ids=out_a.ids, y=out_a.y, mask=mask, proba=out_a.proba, groups=paired_groups(a, b)),
            out_b.proba[order])


def compare_multilabel(a: RunRecord, b: RunRecord) -> dict:
    """Per-finding DeLong (a - b) with Holm-adjusted p-values, and the macro-AUROC paired bootstrap.

    Returns `per_finding` (one entry per finding, in record order), `macro` (the bootstrap's diff, ci_diff,
    p_value, method, n_clusters), `differ` (findings whose Holm p < SIGNIFICANCE, with the better run) and the
    keys of the single-label comparison (`delong` and `mcnemar` None; `note` when the pair could not be tested).
    """
    result = {"a": a.run_id, "b": b.run_id, "task": "multilabel", "n": 0, "delong": None, "mcnemar": None,
              "note": None, "per_finding": [], "macro": None, "differ": []}
    try:
        test, proba_b = aligned(a, b)
    except (DataError, TypeError, ValueError) as error:  # malformed predictions: skip this pair, say why
        logger.warning("paired tests %s vs %s skipped: %s", a.run_id, b.run_id, one_line(error))
        return result | {"note": one_line(error)}
    names = findings(a) or [f"label {j}" for j in range(test.y.shape[1])]
    entries = [_finding_test(name, test, proba_b, j) for j, name in enumerate(names)]
    for entry, adjusted in zip(entries, holm_adjust([e["p_value"] for e in entries])):
        entry["p_holm"] = float(adjusted) if np.isfinite(adjusted) else None
    result.update(n=len(test.ids), per_finding=entries,
                  macro=paired_bootstrap_macro(test.y, test.mask, test.proba, proba_b, groups=test.groups,
                                               n_boot=N_BOOT, seed=BOOT_SEED),
                  differ=[{"finding": e["finding"], "better": "a" if e["diff"] > 0 else "b"} for e in entries
                          if e["p_holm"] is not None and e["p_holm"] < SIGNIFICANCE])
    return result


def _finding_test(name: str, test: LabelledTest, proba_b: np.ndarray, j: int) -> dict:
    scored = test.mask[:, j]
    y = test.y[scored, j]
    entry = {"finding": name, "n": int(y.size), "n_pos": int(y.sum()), "auroc_a": None, "auroc_b": None,
             "diff": None, "ci_diff": None, "p_value": None, "method": None, "n_clusters": None, "note": None}
    if y.size == 0 or y.min() == y.max():
        return entry | {"note": ONE_CLASS}
    groups = None if test.groups is None else [test.groups[i] for i in np.flatnonzero(scored)]
    delong = delong_test(y, test.proba[scored, j], proba_b[scored, j], groups=groups)  # clustered by patient
    return entry | {key: delong[key] for key in ("auroc_a", "auroc_b", "diff", "ci_diff", "p_value", "method",
                                                 "n_clusters")}
