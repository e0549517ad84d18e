"""`Replica`: each rank's samplers shard one permutation, and `gather_split` turns the padded shards of every rank
back into one row per sample, in order, as a one-process evaluation would see them."""

from __future__ import annotations

import numpy as np
import pytest

from headstart.finetune.distributed import Replica


def _eval_shards(n: int, world: int) -> list[dict[str, np.ndarray]]:
    """What each of `world` ranks would evaluate: its eval sampler's positions and a per-sample output."""
    parts = []
    for rank in range(world):
        positions = np.array([p for p, _ in Replica(rank=rank, world_size=world).eval_sampler(n, seed=0)])
        parts.append({"position": positions, "proba": positions / 10.0})
    return parts


@pytest.mark.parametrize("n,world", [(10, 3), (7, 4), (2, 5)])
def test_padded_shards_of_every_rank_gather_into_one_row_per_sample(n, world):
    parts = _eval_shards(n, world)
    assert len({len(p["position"]) for p in parts}) == 1  # equal shards: the sampler pads
    assert sum(len(p["position"]) for p in parts) >= n
    merged = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    gathered = Replica().gather_split(merged, n=n)  # the all-gather's output, merged as one process does
    np.testing.assert_array_equal(gathered["position"], np.arange(n))
    np.testing.assert_allclose(gathered["proba"], np.arange(n) / 10.0)  # the rows travel with their positions


def test_a_missing_sample_is_a_bug_not_a_silently_shorter_split():
    parts = _eval_shards(10, 3)
    merged = {key: np.concatenate([p[key] for p in parts[:2]]) for key in parts[0]}  # one rank's share lost
    with pytest.raises(RuntimeError, match="covered 7 of 10 sample positions"):
        Replica().gather_split(merged, n=10)


def test_train_shards_partition_one_permutation_per_epoch():
    n, world = 11, 3
    samplers = [Replica(rank=r, world_size=world).train_sampler(n, seed=5) for r in range(world)]
    seen = [p for s in samplers for p, _ in s]
    assert set(seen) == set(range(n)) and len(seen) == 12  # every sample, one padded repeat
    for s in samplers:
        s.set_epoch(1)
    assert [p for s in samplers for p, _ in s] != seen  # a new epoch reshuffles, on every rank alike
