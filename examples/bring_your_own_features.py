# %% [markdown]
# # Bring your own features: embeddings made elsewhere, heads and comparisons from headstart
#
# You have features from another model (say CXR Foundation's precomputed `.npz` embeddings, or a model you ran
# yourself) and a CSV of labels. `headstart.cache.write_features` turns them into an ordinary headstart cache, so
# `heads`, `compare`, `cache info` and `cache verify` work on it, at the command line or from Python.
# This example makes a stand-in `.npy` and label CSV first; replace that cell with your own files.

# %%
import csv
import logging
from pathlib import Path

import numpy as np

import headstart

logging.basicConfig(level=logging.WARNING, format="%(message)s")
OUT = Path("byof-out")
OUT.mkdir(exist_ok=True)

# %% Stand-in inputs: 300 embeddings of 64 numbers and a label CSV with columns id,label,split,group
rng = np.random.default_rng(0)
n, dim = 300, 64
labels = rng.choice(["NORMAL", "PNEUMONIA"], size=n, p=[0.35, 0.65])
embeddings = rng.normal(size=(n, dim)).astype(np.float32)
embeddings[:, :4] += 0.9 * (labels == "PNEUMONIA")[:, None]  # some signal in a few directions
np.save(OUT / "embeddings.npy", embeddings)
with open(OUT / "labels.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["id", "label", "split", "group"])
    for i, label in enumerate(labels):
        patient = i // 2  # two images per patient; a patient's images share a split
        split = ("train",) * 6 + ("val", "test", "test", "train")
        writer.writerow([f"images/{i:04d}.png", label, split[patient % 10], f"patient{patient}"])

# %% Read your files. For CXR Foundation: `emb = np.load("embeddings.npz")` and stack its arrays by image id,
# in the order of your label rows.
features = np.load(OUT / "embeddings.npy")
with open(OUT / "labels.csv", newline="") as f:
    rows = list(csv.DictReader(f))

# %% Write the cache: one row per id, labels as names (or indices into `classes`), and the splits to use
cache_path = headstart.cache.write_features(
    OUT / "embeddings.h5",
    features={"my-model": features},
    labels=[r["label"] for r in rows],
    ids=[r["id"] for r in rows],
    splits=[r["split"] for r in rows],
    groups=[r["group"] for r in rows],
    classes=["NORMAL", "PNEUMONIA"],
    source={"model": "stand-in embeddings", "file": "embeddings.npy"},  # stored with the feature set
)
assert headstart.cache.verify_cache(cache_path) == []  # the same checks as `headstart cache verify`
print(headstart.open_cache(cache_path))

# %% Heads on the cache (the same as `headstart heads byof-out/embeddings.h5 -o byof-out/runs --sweep quick`)
runs = headstart.run_heads(cache_path, OUT / "runs", heads=["logreg", "knn"], sweep="quick", n_boot=200)
for record in runs:
    test = record.metrics["test"]
    print(f"{record.run_id}: test AUROC {test['auroc']:.3f} [{test['auroc_ci'][0]:.3f}, {test['auroc_ci'][1]:.3f}]")

# %% Compare (the same as `headstart compare byof-out/runs`)
report = headstart.run_compare(OUT / "runs")
print("report:", report.report_html)
