"""`headstart audit`: shortcuts, near-duplicates, leakage, split shift and test power, read from a cache.

Each check is a function over plain arrays (`AuditInputs`) returning a `CheckResult`; `run_audit` runs them all.
"""

from headstart.studies.audit.config import AuditConfig
from headstart.studies.audit.result import CheckResult
from headstart.studies.audit.runner import CHECKS, AuditReport, run_audit

__all__ = ["AuditConfig", "AuditReport", "CHECKS", "CheckResult", "run_audit"]
