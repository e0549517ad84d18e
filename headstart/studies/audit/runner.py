"""`run_audit`: read the cache once, run every check, and gather the results into one report."""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from threadpoolctl import threadpool_limits

from headstart.errors import DataError, one_line
from headstart.studies.audit.config import AuditConfig
from headstart.studies.audit.fix import SplitFix, fix_splits
from headstart.studies.audit.inputs import AuditInputs, load_inputs
from headstart.studies.audit.leakage import patient_leakage
from headstart.studies.audit.metadata import metadata_baseline
from headstart.studies.audit.multilabel import (
    fit_multilabel_reference, metadata_per_finding, multilabel_power, multilabel_shift, multilabel_shuffle,
)
from headstart.studies.audit.near_duplicates import near_duplicates
from headstart.studies.audit.power import test_power
from headstart.studies.audit.reference import fit_reference
from headstart.studies.audit.result import CheckResult, jsonable, skipped
from headstart.studies.audit.shift import split_shift
from headstart.studies.audit.shuffle import label_shuffle

log = logging.getLogger(__name__)

CHECKS = ("metadata_baseline", "near_duplicates", "patient_leakage", "label_shuffle", "split_shift", "test_power")


@dataclass
class AuditReport:
    """Every check's result, in `CHECKS` order, plus what was audited."""

    cache: str
    feature_set: str | None
    n_samples: int
    splits: dict[str, int]
    checks: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0
    fix: SplitFix | None = None  # what --fix decided and did (None: not asked)

    @property
    def flagged(self) -> bool:
        return any(c.flagged for c in self.checks)

    def check(self, name: str) -> CheckResult:
        return next(c for c in self.checks if c.name == name)

    def to_json(self) -> dict:
        """The documented `audit --json` document (see the README's audit section)."""
        doc: dict = {"cache": self.cache, "feature_set": self.feature_set, "n_samples": self.n_samples,
                     "splits": self.splits, "flagged": self.flagged, "seconds": round(self.seconds, 3),
                     "checks": {c.name: {"flagged": c.flagged, "skipped": c.skipped, "message": c.message}
                                for c in self.checks}}
        if self.fix is not None:
            doc["fix"] = self.fix.to_json()
        for c in self.checks:
            if c.name == "near_duplicates":  # the contract: a list of pairs; the rest of the result beside it
                body = c.to_json()
                doc["near_duplicates"] = body.pop("pairs", [])
                doc["near_duplicates_summary"] = body
            else:
                doc[c.name] = c.to_json()
        return jsonable(doc)


def run_audit(cache_path: str | Path, *, config: AuditConfig | None = None, progress: bool = True,
              on_result=None) -> AuditReport:
    """Audit a cache. `on_result(check)` is called as each check finishes (the CLI prints its line there).

    A check that cannot run (old cache, one split, one class, damaged metadata) comes back skipped with the
    reason; only an unreadable cache or a missing `-b` feature set raises (CacheError). With `config.fix` the new
    splits are published after the checks (`report.fix`; refused, not raised, when test would change unconfirmed).
    """
    config = config or AuditConfig()
    config.validate()
    start = time.perf_counter()
    inputs = load_inputs(cache_path, feature_set=config.feature_set)
    splits = {s: int((inputs.splits == s).sum()) for s in ("train", "val", "test") if (inputs.splits == s).any()}
    report = AuditReport(cache=str(cache_path), feature_set=inputs.feature_set, n_samples=inputs.n, splits=splits)

    def record(result: CheckResult) -> None:
        report.checks.append(result)
        if on_result is not None:
            on_result(result)

    multilabel = inputs.task == "multilabel"  # label checks per finding (studies.audit.multilabel)
    record(_guarded("metadata_baseline", lambda: (metadata_per_finding if multilabel else metadata_baseline)(
        inputs, config)))
    record(_guarded("near_duplicates", lambda: near_duplicates(inputs, config, progress=progress), all_threads=True))
    record(_guarded("patient_leakage", lambda: patient_leakage(inputs)))
    with _one_blas_thread():
        reference = _reference(inputs, config)
    if multilabel:
        record(_guarded("label_shuffle", lambda: multilabel_shuffle(reference, config)))
        record(_guarded("split_shift", lambda: multilabel_shift(inputs, config)))
        record(_guarded("test_power", multilabel_power))
    else:
        record(_guarded("label_shuffle", lambda: label_shuffle(inputs, reference, config)))
        record(_guarded("split_shift", lambda: split_shift(inputs, reference, config)))
        record(_guarded("test_power", lambda: test_power(inputs, reference, config)))
    report.seconds = time.perf_counter() - start
    if config.fix:
        report.fix = fix_splits(str(cache_path), report.check("near_duplicates"), confirm=config.confirm_test)
    return report


def _reference(inputs: AuditInputs, config: AuditConfig):
    try:
        return (fit_multilabel_reference if inputs.task == "multilabel" else fit_reference)(inputs, config)
    except DataError as exc:
        return f"the reference head cannot be fitted ({one_line(exc)})"


def _one_blas_thread():
    """The audit's fits are many small BLAS calls (lbfgs on at most 20k rows): with several BLAS threads every call
    synchronises them, and on a busy 2-core machine a 1,024-d fit took 29 s with two threads, 0.35 s with one.
    Only the near-duplicate search (large matrix products) keeps every thread."""
    return threadpool_limits(limits=1, user_api="blas")


def _guarded(name: str, run, *, all_threads: bool = False) -> CheckResult:
    """Run one check; a DataError (bad labels or scores the check could not foresee) skips it with its message.
    Any other exception is a bug and propagates."""
    started = time.perf_counter()
    try:
        with nullcontext() if all_threads else _one_blas_thread():
            result = run()
    except DataError as exc:
        result = skipped(name, one_line(exc))
    log.debug("%s took %.2f s", name, time.perf_counter() - started)
    result.data.setdefault("seconds", round(time.perf_counter() - started, 3))
    return result
