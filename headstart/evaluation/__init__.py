"""One evaluation core for every strategy: metrics, bootstrap intervals, thresholds, paired tests, run records.

metrics     compute_metrics and the batch kernels (AUROC/AUPRC by one sort, confusion-based rates)
bootstrap   stratified percentile intervals over all resamples at once; evaluate() = one record split
thresholds  decision thresholds chosen on validation (youden, f1, sensitivity:X, specificity:X, fixed:T)
selection   the val score that picks a head's config or a fine-tune's epoch, and the pick
finish      finish_run: threshold on val, val + test metrics with intervals, the record; for every strategy
paired      DeLong (AUROC) and McNemar (accuracy) tests on the same test images
records     RunRecord and RUNS/<run_id>/record.json (strict, deterministic, atomic)
timing      Timer with CUDA synchronisation, peak memory
table       console tables and number formats
"""

# Validation metrics that may select a configuration or a best head -> True when higher is better. Kept here,
# free of imports, so the CLI can offer them as choices without loading numpy or torch.
SELECT_METRICS: dict[str, bool] = {
    "auroc": True, "auprc": True, "balanced_accuracy": True, "accuracy": True, "f1": True,
    "sensitivity": True, "specificity": True, "log_loss": False, "brier": False, "ece": False,
}

# Metrics a learning curve may be fitted to (curve_fit): on [0, 1], larger is better; import-free for the CLI.
FIT_METRICS = ("auroc", "accuracy", "balanced_accuracy", "f1", "auprc")

# For people who bring their own model: the records' threshold and metric protocol (imported on first use).
from headstart.lazy import lazy_exports  # noqa: E402

__getattr__, __dir__ = lazy_exports(__name__, {"choose_threshold": "headstart.evaluation.protocol",
                                               "evaluate": "headstart.evaluation.protocol"}, globals())
