# %% [markdown]
# # headstart quickstart: extract once, iterate heads in seconds
#
# Open this file in Jupyter (with jupytext) or VS Code and run it cell by cell, or run it as a script.
# It builds a tiny synthetic chest X-ray set, extracts features once, sweeps heads on the cache, fine-tunes
# briefly on the same splits, compares the two strategies, and reads the cache and the runs as arrays and a table.
# Sizes are tiny and the weights random, so it finishes in seconds on a CPU: the numbers mean nothing, the
# workflow is the real one. Use `weights="imagenet"` and your own data for real answers.

# %%
import logging
from pathlib import Path

import headstart
from headstart.data.synthetic import make_phantom_dataset

logging.basicConfig(level=logging.WARNING, format="%(message)s")  # headstart logs nothing until you configure it
OUT = Path("quickstart-out")

# %% A small data set in the Kaggle layout (train/, val/, test/ with NORMAL/ and PNEUMONIA/ class folders)
data = make_phantom_dataset(OUT / "data", n_train=64, n_test=32, image_size=48, seed=0)

# %% Stage one: each image is decoded once and every backbone runs once; features go to one HDF5 cache
extracted = headstart.run_extract(data, OUT / "features.h5", backbones=["resnet18"], weights="random",
                                  image_size=32, batch_size=32, workers=0)
print(f"extracted {extracted.extracted} for {extracted.n_images} images in {extracted.seconds:.1f} s")

# %% Stage two: sweep heads on the cached features, select on val, test once; one record per head
runs = headstart.run_heads(OUT / "features.h5", OUT / "runs", heads=["logreg", "linear", "knn"], sweep="quick",
                           n_boot=200)
for record in runs:
    print(record.run_id, "test AUROC", round(record.metrics["test"]["auroc"], 3))

# %% The contrast: a brief full fine-tune on the same splits (read from the cache)
finetuned = headstart.run_finetune(data, OUT / "runs", backbone="resnet18", weights="random", epochs=1,
                                   image_size=32, batch_size=16, workers=0, splits_from=OUT / "features.h5",
                                   n_boot=200)
print(finetuned.run_id, "test AUROC", round(finetuned.metrics["test"]["auroc"], 3))

# %% Compare: report.md, report.html, summary.json and plots
report = headstart.run_compare(OUT / "runs")
print("report:", report.report_html)

# %% The cache as arrays, for your own models (invalid rows are dropped, with a warning)
cache = headstart.open_cache(OUT / "features.h5")
print(cache)
X_train, y_train, ids_train = cache.arrays("resnet18", "train")
X_val, y_val, _ = cache.arrays("resnet18", "val")
X_test, y_test, _ = cache.arrays("resnet18", "test")
print(X_train.shape, cache.classes, cache.splits)

# %% A head is an sklearn-shaped estimator; evaluate it the way the records do (threshold chosen on val)
from headstart.evaluation import choose_threshold, evaluate  # noqa: E402
from headstart.heads import LogRegHead  # noqa: E402

head = LogRegHead(C=1.0, class_weight="balanced").fit(X_train, y_train)
threshold = choose_threshold(y_val, head.predict_proba(X_val))
test = evaluate(y_test, head.predict_proba(X_test), threshold=threshold, n_boot=200)
print(f"my head: test AUROC {test['auroc']:.3f} {test['auroc_ci']}, sensitivity {test['sensitivity']:.2f}")

# %% Every run as a table (pandas is optional: without it, rows() gives plain dicts)
all_runs = headstart.load_runs(OUT / "runs")
try:
    table = all_runs.to_frame()[["run_id", "strategy", "test_auroc", "test_auroc_low", "test_auroc_high",
                                 "train_seconds"]]
except headstart.HeadstartError as missing:
    print(missing)
    table = all_runs.rows()
print(table)
