"""Adding a head is one module and one registry line: a nearest-centroid head, defined and registered only here,
runs through `heads` (sweep, selection, record, saved head), `predict` and `export` without any other change.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from torch import nn

from headstart.heads.protocol import HeadKind, require
from tests.apply.conftest import read_table, record_decisions, record_vs_table
from tests.reliability.conftest import invoke


class NearestCentroid(ClassifierMixin, BaseEstimator):
    """Softmax over minus the squared distance to each class centroid, in units of the train spread."""

    def __init__(self, *, temperature: float = 1.0) -> None:
        self.temperature = temperature

    def fit(self, X, y):
        X = np.asarray(X, dtype=np.float32)
        self.classes_, idx = np.unique(np.asarray(y), return_inverse=True)
        self.centroids_ = np.stack([X[idx == k].mean(axis=0) for k in range(len(self.classes_))]).astype(np.float32)
        self.scale_ = np.float32(max(float(self._dist(X).min(axis=1).mean()), 1e-6))
        self.n_features_in_ = X.shape[1]
        return self

    def _dist(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        return ((X[:, None, :] - self.centroids_[None, :, :]) ** 2).sum(axis=2)

    def predict_proba(self, X) -> np.ndarray:
        z = -self._dist(X) / (self.temperature * self.scale_)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)


class CentroidGraph(nn.Module):
    def __init__(self, centroids: np.ndarray, divisor: float):
        super().__init__()
        self.register_buffer("centroids", torch.as_tensor(np.asarray(centroids, dtype=np.float32)))
        self.divisor = float(divisor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = ((x[:, None, :] - self.centroids[None, :, :]) ** 2).sum(dim=2)
        return torch.softmax(-d / self.divisor, dim=1)


class CentroidKind(HeadKind):
    name = "centroid"
    estimator = NearestCentroid
    tensors = ("centroids", "scale")

    def configs(self, grid) -> list[dict]:
        return [{"temperature": t} for t in (0.5, 2.0)]

    def fit_one(self, params, train, *, fit, seed, epochs=None):
        return NearestCentroid(**params).fit(train.X, train.y)

    def state(self, est, dtype):
        return {"centroids": est.centroids_, "scale": np.array([est.scale_], dtype=np.float32)}, {}

    def build(self, params, t, state, classes):
        est = NearestCentroid(**params)
        est.classes_, est.centroids_, est.scale_ = classes, t["centroids"], np.float32(t["scale"][0])
        est.n_features_in_ = t["centroids"].shape[1]
        require(len(est.centroids_) == len(classes), f"{len(est.centroids_)} centroids for {len(classes)} classes")
        return est

    def graph(self, est):
        return CentroidGraph(est.centroids_, est.temperature * est.scale_)


@pytest.fixture
def centroid():
    from headstart.heads import registry

    kind = registry.register(CentroidKind)
    yield kind
    registry.unregister(kind.name)


def test_a_registered_head_runs_through_heads_predict_and_export(runs, centroid, tmp_path):
    from headstart.api import run_heads
    from headstart.heads import load_head

    (record,) = run_heads(runs["cache32"], tmp_path / "runs", heads=["centroid"], sweep="quick", n_boot=20,
                          device="cpu", progress=False)
    run = tmp_path / "runs" / record.run_id
    assert record.run_id == "cached-head_resnet18_centroid_s0" and record.head == "centroid"
    assert [s["temperature"] for s in record.config["sweep_scores"]] == [0.5, 2.0]
    assert record.config["temperature"] in (0.5, 2.0) and record.threshold is not None
    assert json.loads((run / "head.json").read_text())["head"] == "centroid"

    loaded = load_head(run)
    assert type(loaded) is NearestCentroid
    test = np.array(record.predictions["test"]["proba"])
    assert test.shape[1] == 2 and np.allclose(test.sum(axis=1), 1.0)

    table = read_table(_predict(run, runs["data"], tmp_path / "p.csv"))
    expected, got, rows = record_vs_table(run, table)
    assert np.abs(got - expected).max() <= 1e-4
    assert [row["prediction"] for row in rows] == record_decisions(run)

    pytest.importorskip("onnxruntime")
    exported = invoke("export", str(run), "-o", str(tmp_path / "model.onnx"))
    assert exported.exit_code == 0, exported.output
    from_model = read_table(_predict(tmp_path / "model.onnx", runs["data"], tmp_path / "m.csv"))
    _, got_model, _ = record_vs_table(run, from_model)
    assert np.abs(got_model - expected).max() <= 1e-3


def test_an_unregistered_head_is_refused_in_one_line(runs, tmp_path):
    from headstart.api import run_heads
    from headstart.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown head centroid; expected one or more of logreg, linear, mlp, knn"):
        run_heads(runs["cache32"], tmp_path / "runs", heads=["centroid"], sweep="quick", device="cpu",
                  progress=False)


def _predict(run, data, out):
    result = invoke("predict", str(run), str(data), "-o", str(out), "--workers", "0", "--n-boot", "20",
                    "--device", "cpu")
    assert result.exit_code == 0, result.output
    return out
