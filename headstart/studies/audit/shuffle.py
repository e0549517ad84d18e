"""Label-shuffle floor: the reference head retrained on shuffled train labels should score chance on test.

A floor far from 0.5 means the features or the pipeline carry the test labels some other way: a bug (labels or
ids leaking into features, rows misaligned) or leakage. The chance band comes from permuting the *test* labels
against the floor's own scores, so it is exact for the test split's size and class balance.
"""

from __future__ import annotations

import numpy as np

from headstart.evaluation.metrics import batch_ranking
from headstart.heads.logreg import LogRegHead
from headstart.studies.audit.config import AuditConfig
from headstart.studies.audit.fit import auroc, predict_proba
from headstart.studies.audit.inputs import AuditInputs
from headstart.studies.audit.reference import Reference
from headstart.studies.audit.result import CheckResult, skipped

NAME = "label_shuffle"
NULL_PERMUTATIONS = 200  # test-label permutations behind the chance band
Z_MEAN, Z_ANY = 3.0, 4.0  # flag: mean of R floors beyond 3 sd/sqrt(R) of chance, or any one beyond 4 sd


def label_shuffle(inputs: AuditInputs, reference: Reference | str, config: AuditConfig) -> CheckResult:
    """Test AUROC of `shuffle_repeats` heads trained on independently shuffled train labels."""
    empty = {"auroc_mean": None, "aurocs": []}
    if isinstance(reference, str):
        return skipped(NAME, reference, **empty)
    rng = np.random.default_rng(config.seed + 1)
    x, y, n_classes = inputs.features, inputs.labels, len(inputs.classes)
    y_train, y_test = y[reference.train], y[reference.test]
    floors, last = [], None
    for _ in range(config.shuffle_repeats):
        head = LogRegHead(C=reference.fitted.C, class_weight="balanced", max_iter=config.max_iter)
        head.fit(x[reference.train], rng.permutation(y_train))
        last = predict_proba(head, x[reference.test], n_classes=n_classes)
        floors.append(auroc(y_test, last))
    floors_arr = np.asarray(floors)
    null = batch_ranking(y_test, np.stack([last[rng.permutation(len(y_test))] for _ in range(NULL_PERMUTATIONS)]))
    sd = float(np.nanstd(null["auroc"]))
    mean = float(np.nanmean(floors_arr))
    center = 0.5
    far_mean = abs(mean - center) > Z_MEAN * sd / np.sqrt(len(floors))
    far_any = bool(np.any(np.abs(floors_arr - center) > Z_ANY * sd))
    flagged = bool(far_mean or far_any)
    band = f"chance band 0.50 +- {2 * sd:.2f}"
    text = ", ".join(f"{v:.2f}" for v in floors)
    if flagged:
        message = (f"heads trained on shuffled labels score test AUROC {mean:.2f} ({text}; {band}): far from chance, "
                   "look for a bug or leakage")
    else:
        message = f"shuffled-label floor at chance: test AUROC {mean:.2f} over {len(floors)} repeats ({band})"
    data = {"auroc_mean": mean, "aurocs": floors, "null_sd": sd, "repeats": len(floors), "C": reference.fitted.C,
            "real_auroc": reference.test_auroc}
    return CheckResult(NAME, flagged, message, data)
