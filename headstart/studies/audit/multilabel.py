"""The audit of a multi-label cache: the label-dependent checks per finding, gathered over the findings.

Each finding is audited as the binary question "is it present?" on the rows where it is known (an uncertain
label is never scored; a blank is a negative, evaluation's default reading): its rows keep their split, the others
are set aside. The metadata baseline runs per finding (`per_label`) and is flagged when any finding is. The
reference head and the label-shuffle floor are the multi-label task's: one logistic regression per finding, the
floor the macro AUROC over the findings of heads trained on shuffled labels, with the standard error of that
mean. Near duplicates and patient leakage read no labels and run as for any cache. Split shift compares features
(domain AUROC) and each finding's prevalence per split; the power estimate needs one binary task and is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from headstart.studies.audit.config import AuditConfig
from headstart.studies.audit.inputs import AuditInputs
from headstart.studies.audit.metadata import NAME as METADATA, metadata_baseline
from headstart.studies.audit.power import NAME as POWER
from headstart.studies.audit.reference import Reference, fit_reference
from headstart.studies.audit.result import CheckResult, fmt_ci, skipped
from headstart.studies.audit.shift import split_shift
from headstart.studies.audit.shuffle import NAME as SHUFFLE, Z_MEAN, label_shuffle

SET_ASIDE = "unlabelled"  # the split of a row whose finding is not known (no check reads it)


def finding_view(inputs: AuditInputs, j: int) -> AuditInputs:
    """Finding j as a binary audit input: labels 0/1, rows where it is not known set aside."""
    name = inputs.classes[j]
    return replace(inputs, labels=inputs.truth[:, j].astype(np.int64), classes=[f"no {name}", name], task="binary",
                   splits=np.where(inputs.known[:, j], inputs.splits, SET_ASIDE), truth=None, known=None)


def metadata_per_finding(inputs: AuditInputs, config: AuditConfig) -> CheckResult:
    """The metadata baseline of each finding; `auroc` is the macro mean over the findings it could score."""
    results = {name: metadata_baseline(finding_view(inputs, j), config) for j, name in enumerate(inputs.classes)}
    per_label = {name: {"auroc": r.data.get("auroc"), "auroc_ci": r.data.get("auroc_ci"), "flagged": r.flagged,
                        "skipped": r.skipped, "n_test": r.data.get("n_test")} for name, r in results.items()}
    ran = {name: r for name, r in results.items() if not r.skipped}
    empty = {"auroc": None, "auroc_ci": None, "features": [], "per_label": per_label}
    if not ran:
        reasons = sorted({r.skipped for r in results.values()})
        why = reasons[0] if len(reasons) == 1 else f"no finding could be scored ({'; '.join(reasons)})"
        return skipped(METADATA, why, **empty)
    scores = {name: r.data["auroc"] for name, r in ran.items() if r.data.get("auroc") is not None}
    macro = float(np.mean(list(scores.values()))) if scores else None
    flagged = [name for name, r in ran.items() if r.flagged]
    if flagged:
        message = ("image metadata alone predicts " + ", ".join(
            f"{name} (AUROC {fmt_ci(ran[name].data['auroc'], ran[name].data['auroc_ci'])})" for name in flagged)
            + ": a model can take a shortcut")
    else:
        top = max(scores, key=scores.get) if scores else None
        message = (f"metadata alone gives test macro AUROC {macro:.2f} over {len(scores)} finding(s)"
                   + (f" (highest {scores[top]:.2f}, {top})" if top else "") + ": no strong metadata shortcut")
    not_scored = len(results) - len(ran)
    if not_scored:
        message += f"; {not_scored} finding(s) not scored (see per_label)"
    first = next(iter(ran.values())).data
    data = {**empty, "auroc": macro, "features": first.get("features", []), "flagged_findings": flagged,
            "n_findings_scored": len(scores), "n_without_metadata": first.get("n_without_metadata"),
            "problems": first.get("problems", [])}
    return CheckResult(METADATA, bool(flagged), message, data)


@dataclass
class MultilabelReference:
    """One reference head per finding that could be fitted; `skipped` says why the others could not."""

    views: dict[str, AuditInputs]
    heads: dict[str, Reference]
    skipped: dict[str, str]

    @property
    def test_auroc(self) -> float:
        values = [r.test_auroc for r in self.heads.values() if np.isfinite(r.test_auroc)]
        return float(np.mean(values)) if values else float("nan")


def fit_multilabel_reference(inputs: AuditInputs, config: AuditConfig) -> MultilabelReference | str:
    """The per-finding reference heads, or one line saying why none can be fitted."""
    views = {name: finding_view(inputs, j) for j, name in enumerate(inputs.classes)}
    heads, why = {}, {}
    for name, view in views.items():
        ref = fit_reference(view, config)
        if isinstance(ref, str):
            why[name] = ref
        else:
            heads[name] = ref
    if not heads:
        reasons = sorted(set(why.values()))
        return reasons[0] if len(reasons) == 1 else f"no finding can be fitted ({'; '.join(reasons)})"
    return MultilabelReference(views, heads, why)


def multilabel_shuffle(reference: MultilabelReference | str, config: AuditConfig) -> CheckResult:
    """The label-shuffle floor of the multi-label task: per repeat, the macro test AUROC over the findings of
    heads trained on shuffled labels; flagged when its mean is more than Z_MEAN standard errors from 0.5."""
    empty = {"auroc_mean": None, "aurocs": [], "per_label": {}}
    if isinstance(reference, str):
        return skipped(SHUFFLE, reference, **empty)
    per = {name: label_shuffle(reference.views[name], ref, config) for name, ref in reference.heads.items()}
    floors = np.array([r.data["aurocs"] for r in per.values()], dtype=np.float64)  # (findings, repeats)
    scored = np.isfinite(floors).all(axis=1)
    if not scored.any():
        return skipped(SHUFFLE, "no finding's test split holds both classes", **empty)
    macro = floors[scored].mean(axis=0)
    mean = float(macro.mean())
    errors = np.array([r.data["standard_error"] for r in per.values()], dtype=np.float64)[scored]
    standard_error = float(np.sqrt((errors ** 2).sum()) / scored.sum())
    flagged = bool(abs(mean - 0.5) > Z_MEAN * standard_error)
    band = f"chance 0.50 +- {Z_MEAN * standard_error:.2f}"
    text = ", ".join(f"{v:.2f}" for v in macro)
    if flagged:
        message = (f"heads trained on shuffled labels score test macro AUROC {mean:.2f} over {int(scored.sum())} "
                   f"finding(s) ({text}; {band}): far from chance, look for a bug or leakage")
    else:
        message = (f"shuffled-label floor at chance: test macro AUROC {mean:.2f} over {int(scored.sum())} finding(s) "
                   f"and {len(macro)} repeats ({band})")
    per_label = {name: {"auroc_mean": r.data.get("auroc_mean"), "aurocs": r.data.get("aurocs"),
                        "flagged": r.flagged, "standard_error": r.data.get("standard_error"),
                        "real_auroc": r.data.get("real_auroc")} for name, r in per.items()}
    per_label.update({name: {"skipped": why} for name, why in reference.skipped.items()})
    data = {"auroc_mean": mean, "aurocs": macro.tolist(), "standard_error": standard_error, "repeats": len(macro),
            "real_auroc": reference.test_auroc, "per_label": per_label}
    return CheckResult(SHUFFLE, flagged, message, data)


def multilabel_shift(inputs: AuditInputs, config: AuditConfig) -> CheckResult:
    """The domain classifier (features only) and each finding's prevalence per split, in `class_balance`."""
    unlabelled = replace(inputs, labels=np.zeros(inputs.n, dtype=np.int64), classes=["all"], task="binary")
    result = split_shift(unlabelled, "multi-label: no single operating point", config)
    balance = {}
    for split in ("train", "val", "test"):
        rows = inputs.splits == split
        if rows.any():
            known, truth = inputs.known[rows], inputs.truth[rows] == 1
            balance[split] = {"n": int(rows.sum()), **{
                name: float(truth[known[:, j], j].mean()) if known[:, j].any() else None
                for j, name in enumerate(inputs.classes)}}
    result.data["class_balance"] = balance
    return result


def multilabel_power() -> CheckResult:
    return skipped(POWER, "the paired DeLong power estimate needs one binary task; a multi-label cache has one per "
                          "finding", auroc_half_width=None, accuracy_half_width=None, min_detectable_auroc_diff=None)
