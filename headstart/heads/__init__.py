
# The head kinds, free of imports so `headstart heads --help` need not load torch.
HEADS = ("logreg", "linear", "mlp", "knn")
