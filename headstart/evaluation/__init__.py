"""One evaluation core for every strategy: metrics, bootstrap intervals, thresholds, paired tests, run records.

metrics     compute_metrics and the batch kernels (AUROC/AUPRC by one sort, confusion-based rates)
bootstrap   stratified percentile intervals over all resamples at once; evaluate() = one record split
thresholds  decision thresholds chosen on validation (youden, f1, sensitivity:X, specificity:X, fixed:T)
paired      DeLong (AUROC) and McNemar (accuracy) tests on the same test images
records     RunRecord and RUNS/<run_id>/record.json (strict, deterministic, atomic)
timing      Timer with CUDA synchronisation, peak memory
table       console tables and number formats
"""
