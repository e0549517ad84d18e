
# The head kinds and the named sweep grids, free of imports so `headstart heads --help` need not load torch.
HEADS = ("logreg", "linear", "mlp", "knn")
SWEEP_NAMES = ("quick", "default")  # heads.sweep.SWEEPS holds one grid per name, built from this tuple
