"""Pairing two runs' test predictions by image id, shared by the single-label and the multi-label paired tests.

A pair whose id sets differ is refused (DataError) rather than tested on a silently mismatched pairing.
"""

from __future__ import annotations

import numpy as np

from headstart.errors import DataError
from headstart.evaluation.records import RunRecord


def id_order(ids_a: list[str], ids_b: list[str], a: RunRecord, b: RunRecord) -> np.ndarray:
    """Positions in b's arrays of a's test ids, in a's order; DataError when the two id sets differ."""
    if len(set(ids_a)) != len(ids_a) or len(set(ids_b)) != len(ids_b):
        raise DataError(f"{a.run_id if len(set(ids_a)) != len(ids_a) else b.run_id} repeats test ids; "
                        "expected one prediction per image")
    if set(ids_a) != set(ids_b):
        shared = len(set(ids_a) & set(ids_b))
        raise DataError(
            f"test ids differ ({len(ids_a)} in {a.run_id}, {len(ids_b)} in {b.run_id}, {shared} shared); "
            "expected the same test split; rerun both on the same data and splits (finetune --splits-from CACHE)"
        )
    position = {image_id: i for i, image_id in enumerate(ids_b)}
    return np.array([position[image_id] for image_id in ids_a], dtype=np.int64)


def paired_groups(a: RunRecord, b: RunRecord) -> list[str] | None:
    """The patient of each of a's test images (in a's order), from a's record or else b's; None when neither has
    them or they disagree in length."""
    ids = [str(i) for i in a.predictions["test"]["ids"]]
    for record in (a, b):
        test = record.predictions.get("test") or {}
        groups = test.get("groups")
        if groups is not None and len(groups) == len(test["ids"]):
            by_id = dict(zip((str(i) for i in test["ids"]), (str(g) for g in groups)))
            return [by_id.get(i, "") for i in ids]
    return None
