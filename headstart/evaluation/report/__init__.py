"""The comparison report: tables, break-even, paired tests, plots, and the md/html/json writers.

`build_report(runs_dir=..., output_dir=...)` is the entry point; `headstart compare` is its command line.
"""

from headstart.evaluation.report.build import ReportResult, build_report

__all__ = ["ReportResult", "build_report"]
