"""Blocked standardisation: the same numbers as numpy / sklearn, without whole-matrix temporaries."""

import tracemalloc

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler

from headstart.heads import scaling
from headstart.heads.scaling import column_moments, fit_scaler, scaled_copy, standardise, torch_moments


def _matrix(rows=3000, dim=64, seed=0):
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((rows, dim)) * rng.uniform(0.1, 30, dim) + rng.uniform(-50, 50, dim)).astype(np.float32)
    X[:, 5] = 7.0  # a constant feature
    return X


def test_moments_match_numpy(monkeypatch):
    monkeypatch.setattr(scaling, "BLOCK_BYTES", 8 * 64 * 7)  # 7 rows per block: many blocks, a ragged last one
    X = _matrix()
    mean, var = column_moments(X)
    np.testing.assert_allclose(mean, X.mean(axis=0, dtype=np.float64), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(var, X.var(axis=0, dtype=np.float64), rtol=1e-9, atol=1e-12)


def test_scaler_matches_sklearn(monkeypatch):
    monkeypatch.setattr(scaling, "BLOCK_BYTES", 8 * 64 * 7)
    X = _matrix(seed=1)
    ours, theirs = fit_scaler(X), StandardScaler().fit(X)
    np.testing.assert_allclose(ours.scale_, theirs.scale_, rtol=1e-9)
    assert ours.scale_[5] == theirs.scale_[5] == 1.0  # constant feature left unscaled, as sklearn does
    np.testing.assert_allclose(scaled_copy(X, ours), theirs.transform(X), rtol=0, atol=1e-5)
    assert ours.n_samples_seen_ == len(X) and ours.n_features_in_ == X.shape[1]


def test_torch_standardise_matches_the_plain_formula(monkeypatch):
    monkeypatch.setattr(scaling, "BLOCK_BYTES", 8 * 64 * 7)
    X = _matrix(seed=2)
    mean, scale = torch_moments(X)
    assert scale[5] == 1.0 and mean.dtype == scale.dtype == np.float32
    expected = (torch.from_numpy(X) - torch.from_numpy(mean)) / torch.from_numpy(scale)
    assert torch.equal(standardise(X, mean, scale, torch.device("cpu")), expected)
    assert torch.equal(standardise(X.astype(np.float16), mean, scale, torch.device("cpu")),
                       (torch.from_numpy(X.astype(np.float16)).float() - torch.from_numpy(mean)) / torch.from_numpy(scale))
    assert standardise(X[:0], mean, scale, torch.device("cpu")).shape == (0, 64)


def test_standardising_holds_one_copy_at_most(monkeypatch):
    """Issue 13's memory target: sklearn's fit peaks at 2.25 copies of X and numpy's float64 std at 2; the
    blocked versions add the one output copy and a few blocks."""
    monkeypatch.setattr(scaling, "BLOCK_BYTES", 256 * 2**10)  # blocks small next to the 20 MB matrix
    X = _matrix(rows=20000, dim=256)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        scaler = fit_scaler(X)
        mean, scale = torch_moments(X)
        moments_peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = scaled_copy(X, scaler)
        copy_peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert moments_peak < 0.1 * X.nbytes + 2 * scaling.BLOCK_BYTES
    assert copy_peak < 1.05 * X.nbytes + 2 * scaling.BLOCK_BYTES
    assert out.shape == X.shape and mean.shape == scale.shape == (256,)
