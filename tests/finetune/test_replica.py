"""The one-process `Replica`: the same job record as extraction's `DistInfo`, and every operation an identity."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from headstart.distributed import DistInfo
from headstart.finetune.distributed import Replica


def test_replica_is_the_job_record_with_training_operations(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    replica = Replica.from_env()
    assert isinstance(replica, DistInfo) and replica == Replica()
    assert [f.name for f in dataclasses.fields(Replica)] == [f.name for f in dataclasses.fields(DistInfo)]
    assert replica.is_main and not replica.distributed and replica.world_size == 1
    assert Replica(rank=1, world_size=2).distributed and not Replica(rank=1, world_size=2).is_main


def test_one_process_operations_are_identities():
    replica = Replica()
    model = nn.Linear(2, 2)
    assert replica.wrap(model, device=torch.device("cpu")) is model
    assert replica.device(torch.device("cpu")) == torch.device("cpu")
    part = {"position": np.array([2, 0, 1]), "proba": np.array([0.2, 0.0, 0.1])}
    merged = replica.gather_split(part, n=3)
    np.testing.assert_array_equal(merged["position"], [0, 1, 2])
    np.testing.assert_array_equal(merged["proba"], [0.0, 0.1, 0.2])
    stats = {"loss": 1.0, "accuracy": 0.5, "images": 4, "seconds": 2.0}
    assert replica.combine_train(stats) is stats and replica.broadcast([1]) == [1]
    assert replica.any_rank(torch.tensor(1)) and not replica.any_rank(torch.tensor(0))
    assert list(replica.train_sampler(3, seed=0)) == list(replica.train_sampler(3, seed=0))
    assert [p for p, _ in replica.eval_sampler(3, seed=0)] == [0, 1, 2]
