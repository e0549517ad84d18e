"""Split shift: does test look like train? If not, a threshold chosen on val (carved from train) transfers poorly.

Three views: a domain classifier (logistic regression telling test embeddings from train embeddings, scored
out-of-fold), the class balance per split, and the reference head's val-chosen operating point measured on val
and on test. The Kaggle pediatric set is the textbook case: its official test set is shifted from train, and
specificity at a val-chosen threshold drops to about half on test.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedKFold

from headstart.evaluation.bootstrap import bootstrap_ci
from headstart.evaluation.thresholds import parse_threshold_rule
from headstart.heads.logreg import LogRegHead
from headstart.studies.audit.config import AuditConfig
from headstart.studies.audit.fit import auroc
from headstart.studies.audit.inputs import AuditInputs
from headstart.studies.audit.reference import Reference
from headstart.studies.audit.result import CheckResult, fmt_ci, skipped

NAME = "split_shift"
MAX_DOMAIN_ROWS = 3000  # rows per side for the domain classifier: enough to see a shift, cheap at 100k images
DOMAIN_C = 0.1  # regularised: the domain classifier need only detect a difference, not be the best possible
DOMAIN_FOLDS = 5
MAX_DRIFT = 0.15  # flag when test prevalence, sensitivity or specificity moves this far from val / train


def class_balance(inputs: AuditInputs) -> dict[str, dict[str, float]]:
    """Per split: the fraction of each class (and `n`)."""
    out = {}
    for split in ("train", "val", "test"):
        labels = inputs.labels[inputs.splits == split]
        if len(labels):
            counts = np.bincount(labels, minlength=len(inputs.classes))
            out[split] = {"n": int(len(labels)), **{c: float(k / len(labels)) for c, k in zip(inputs.classes, counts)}}
    return out


def domain_auroc(x_a: np.ndarray, x_b: np.ndarray, *, config: AuditConfig) -> tuple[float, list[float]]:
    """Out-of-fold AUROC (and 95% interval) of a classifier telling rows of `x_b` from rows of `x_a`; 0.5 = alike."""
    rng = np.random.default_rng(config.seed + 2)
    x_a = x_a[rng.choice(len(x_a), min(len(x_a), MAX_DOMAIN_ROWS), replace=False)]
    x_b = x_b[rng.choice(len(x_b), min(len(x_b), MAX_DOMAIN_ROWS), replace=False)]
    x = np.concatenate([x_a, x_b])
    y = np.r_[np.zeros(len(x_a), dtype=np.int64), np.ones(len(x_b), dtype=np.int64)]
    folds = StratifiedKFold(n_splits=min(DOMAIN_FOLDS, len(x_a), len(x_b)), shuffle=True, random_state=config.seed)
    proba = np.zeros(len(y))
    for fit_rows, held in folds.split(x, y):
        head = LogRegHead(C=DOMAIN_C, max_iter=config.max_iter).fit(x[fit_rows], y[fit_rows])
        proba[held] = head.predict_proba(x[held])[:, 1]
    ci = bootstrap_ci(y, proba, threshold=None, metrics=("auroc",), n_boot=config.n_boot, seed=config.seed)["auroc"]
    return auroc(y, np.stack([1 - proba, proba], axis=1)), ci


def operating_point(y: np.ndarray, p_pos: np.ndarray, threshold: float) -> dict[str, float]:
    pred = p_pos >= threshold
    pos, neg = y == 1, y == 0
    return {"sensitivity": float(pred[pos].mean()) if pos.any() else float("nan"),
            "specificity": float((~pred[neg]).mean()) if neg.any() else float("nan")}


def suggest_rules(*, prevalence_shift: bool, covariate_shift: bool) -> list[str]:
    """`--threshold-rule` values worth trying given the shift found (each checked by parse_threshold_rule)."""
    rules = []
    if covariate_shift:
        rules += ["sensitivity:0.95", "specificity:0.9"]  # name the operating point you need; check it on test
    if prevalence_shift:
        rules += ["youden"]  # rate-based rules ignore prevalence; f1 does not
    for rule in rules:
        parse_threshold_rule(rule)
    return list(dict.fromkeys(rules))


def split_shift(inputs: AuditInputs, reference: Reference | str, config: AuditConfig) -> CheckResult:
    """Domain-classifier AUROC (test vs train), class balance per split, and the val -> test operating-point drift."""
    balance = class_balance(inputs)
    data: dict = {"class_balance": balance, "domain_auroc": None, "domain_auroc_ci": None}
    if "test" not in balance or "train" not in balance:
        return skipped(NAME, f"needs a train and a test split; the cache has {', '.join(balance) or 'none'}", **data)
    parts: list[str] = []
    prevalence_moved = domain_differs = point_moved = False
    positive = inputs.classes[-1] if len(inputs.classes) == 2 else None  # class 1 of a binary task
    if inputs.features is not None:
        value, ci = domain_auroc(inputs.features[inputs.rows("train")], inputs.features[inputs.rows("test")],
                                 config=config)
        data.update(domain_auroc=value, domain_auroc_ci=ci)
        parts.append(f"test-vs-train domain AUROC {fmt_ci(value, ci)}")
        domain_differs = bool(ci[0] > config.flag_auroc_low)
    else:
        parts.append(f"no domain classifier ({inputs.feature_note})")
    if positive:
        drift = abs(balance["test"][positive] - balance["train"][positive])
        data["prevalence_shift"] = drift
        parts.append(f"{positive} {100 * balance['train'][positive]:.0f}% of train, "
                     f"{100 * balance['test'][positive]:.0f}% of test")
        prevalence_moved = bool(drift > MAX_DRIFT)
    if not isinstance(reference, str) and reference.threshold is not None:
        y = inputs.labels
        on_val = operating_point(y[reference.val], reference.val_proba[:, 1], reference.threshold)
        on_test = operating_point(y[reference.test], reference.test_proba[:, 1], reference.threshold)
        data["operating_point"] = {"threshold": reference.threshold, "val": on_val, "test": on_test}
        parts.append(f"val-chosen threshold: sensitivity {on_val['sensitivity']:.2f} -> {on_test['sensitivity']:.2f}, "
                     f"specificity {on_val['specificity']:.2f} -> {on_test['specificity']:.2f} (val -> test)")
        point_moved = bool(max(abs(on_val[k] - on_test[k]) for k in on_val) > MAX_DRIFT)
    rules = suggest_rules(prevalence_shift=prevalence_moved, covariate_shift=domain_differs or point_moved)
    data["suggested_threshold_rules"] = rules
    flagged = prevalence_moved or domain_differs or point_moved
    message = "; ".join(parts)
    if flagged and rules:
        message += "; a val-chosen threshold may not hold on test: try " + ", ".join(
            f"--threshold-rule {r}" for r in rules)
    return CheckResult(NAME, flagged, message, data)
