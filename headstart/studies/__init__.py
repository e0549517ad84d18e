"""Questions asked of a cache, built only from the stages' public functions: `audit` (shortcuts and leakage),
`curve` (label efficiency) and `screen` (successive halving over backbones)."""

# The metrics a learning curve's power law may be fitted to (on [0, 1], larger is better). Kept here, free of
# imports, so `headstart curve --help` offers them without loading numpy.
FIT_METRICS = ("auroc", "accuracy", "balanced_accuracy", "f1", "auprc")
