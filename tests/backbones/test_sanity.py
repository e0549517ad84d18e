"""Sanity checks: collapsed embeddings, NaN/Inf rows and input-range mismatches give one-line warnings."""

import numpy as np
import pytest
import torch

from headstart.backbones.sanity import EmbeddingStats, input_range_warnings
from headstart.backbones.types import Preprocessing

RNG = np.random.default_rng(0)


def _stats(*batches) -> EmbeddingStats:
    stats = EmbeddingStats()
    for batch in batches:
        stats.update(batch)
    return stats


def test_healthy_features_raise_no_warning_and_moments_match_numpy():
    x = RNG.normal(size=(300, 16))
    stats = _stats(x[:7], torch.from_numpy(x[7:100]), x[100:])
    assert stats.warnings("resnet18") == []
    assert np.allclose(stats.m2 / stats.count, x.var(axis=0))
    summary = stats.summary()
    assert summary["rows"] == 300 and summary["nonfinite_rows"] == 0 and summary["constant_dims"] == 0


def test_identical_rows_are_reported_as_collapsed():
    x = np.tile(RNG.normal(size=(1, 32)), (50, 1)) + RNG.normal(scale=1e-6, size=(50, 32))
    (warning,) = _stats(x).warnings("xrv:densenet121-res224-all")
    assert warning.startswith("xrv:densenet121-res224-all: all 50 feature rows are nearly identical")
    assert "input range" in warning and "\n" not in warning


def test_mostly_constant_dims_are_reported():
    x = np.zeros((40, 10))
    x[:, :3] = RNG.normal(size=(40, 3))
    (warning,) = _stats(x).warnings("resnet18:layer3:gem")
    assert "7 of 10 feature dims are constant over 40 images" in warning


def test_nan_and_inf_rows_are_counted_and_kept_out_of_the_moments():
    x = RNG.normal(size=(20, 4))
    x[3, 1], x[5, 0] = np.nan, np.inf
    stats = _stats(x)
    (warning,) = stats.warnings("timm:resnet18")
    assert "2 of 20 feature rows hold NaN or Inf" in warning
    assert stats.count == 18 and np.isfinite(stats.m2).all()


def test_xrv_fed_unit_range_images_is_an_input_range_warning():
    xrv = Preprocessing(input_size=224, resize_size=224, mean=(0.5,), std=(0.5 / 1024,), channels=1)
    assert xrv.value_range == (-1024.0, 1024.0)
    (warning,) = input_range_warnings((0.0, 1.0), xrv.value_range, name="xrv:densenet121-res224-all")
    assert "was fed values in [0, 1] but expects [-1.02e+03, 1.02e+03]" in warning and "torchxrayvision" in warning
    assert input_range_warnings((-1000.0, 990.0), xrv.value_range, name="xrv") == []


@pytest.mark.parametrize("observed,flagged", [((-2.1, 2.6), False), ((-0.2, 0.3), False), ((0.0, 255.0), True),
                                              ((-2.1, float("nan")), True)])
def test_imagenet_normalised_inputs(observed, flagged):
    warnings = input_range_warnings(observed, Preprocessing().value_range, name="resnet18")
    assert bool(warnings) == flagged
