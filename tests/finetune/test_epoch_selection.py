"""Best-epoch selection: a non-finite val metric is the worst value, never the best (not even in epoch 0)."""

from __future__ import annotations

import math

import pytest

from headstart.errors import TrainingError
from headstart.finetune.epoch import TrainState


def test_a_nan_first_epoch_does_not_freeze_selection():
    state = TrainState()
    assert state.update(0, math.nan) is False and state.best_epoch == -1  # before: NaN became the best for good
    assert state.update(1, 0.70) is True and (state.best_epoch, state.best_metric) == (1, 0.70)
    assert state.update(2, math.inf) is False and state.update(3, -math.inf) is False
    assert state.update(4, 0.65) is False and state.update(5, 0.80) is True and state.best_epoch == 5
    state.require_best("auroc")  # there is a best epoch: no error


def test_every_epoch_non_finite_is_one_clear_error():
    state = TrainState()
    for epoch, value in enumerate([math.nan, math.nan, math.inf]):
        state.history.append({"epoch": epoch + 1})
        assert state.update(epoch, value) is False
    with pytest.raises(TrainingError, match=r"val auroc was NaN or infinite in every one of 3 epoch\(s\)") as info:
        state.require_best("auroc")
    assert "\n" not in str(info.value)
