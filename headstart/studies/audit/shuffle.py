"""Label-shuffle floor: the reference head retrained on shuffled train labels should score chance on test.

A floor far from 0.5 means the pipeline carries the labels some other way than through what the head learned:
a bug (labels not really shuffled, labels or ids leaking into the rows, an evaluation that peeks). One shuffled
head can land well away from 0.5 when the features are informative (its random direction may align with the
signal), so the check tests the *mean* of R repeats against chance, with the larger of two spreads: the
permutation spread of one head's test AUROC (exact for the test split's size and balance) and the spread
observed between the repeats.
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
Z_MEAN = 3.0  # flag: the mean of R floors more than 3 standard errors from 0.5


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
        head.fit(x[reference.train], shuffled(y_train, rng))
        last = predict_proba(head, x[reference.test], n_classes=n_classes)
        floors.append(auroc(y_test, last))
    floors_arr = np.asarray(floors)
    null = batch_ranking(y_test, np.stack([last[rng.permutation(len(y_test))] for _ in range(NULL_PERMUTATIONS)]))
    sd = float(np.nanstd(null["auroc"]))
    spread = float(np.nanstd(floors_arr, ddof=1)) if len(floors) > 1 else 0.0
    mean = float(np.nanmean(floors_arr))
    standard_error = max(sd, spread) / np.sqrt(len(floors))
    flagged = bool(abs(mean - 0.5) > Z_MEAN * standard_error)
    band = f"chance 0.50 +- {Z_MEAN * standard_error:.2f}"
    text = ", ".join(f"{v:.2f}" for v in floors)
    if flagged:
        message = (f"heads trained on shuffled labels score test AUROC {mean:.2f} ({text}; {band}): far from chance, "
                   "look for a bug or leakage")
    else:
        message = f"shuffled-label floor at chance: test AUROC {mean:.2f} over {len(floors)} repeats ({band})"
    data = {"auroc_mean": mean, "aurocs": floors, "null_sd": sd, "repeat_sd": spread, "repeats": len(floors),
            "standard_error": standard_error, "C": reference.fitted.C,
            "real_auroc": reference.test_auroc}
    return CheckResult(NAME, flagged, message, data)


def shuffled(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The train labels in random order (one function, so a test can stand in a broken shuffle)."""
    return rng.permutation(labels)
