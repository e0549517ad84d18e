"""Named hyperparameter grids (`--sweep quick|default`) and the hyperparameter dicts each head sweeps.

A grid is data, not code: each head kind (heads.registry) reads its values from it and turns them into its
sweep: one `LogRegHead` per C (warm-started path), one batched torch model per torch kind, one neighbour search
per kNN sweep.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from headstart.errors import ConfigError
from headstart.heads.batched import TrainSettings
from headstart.heads.registry import get_head


@dataclass(frozen=True)
class SweepGrid:
    """The values each head's sweep crosses; every combination is trained and the best is picked on val."""

    name: str
    logreg_C: tuple[float, ...]  # inverse L2 strength, on a log grid
    linear_lr: tuple[float, ...]  # AdamW peak learning rates
    linear_weight_decay: tuple[float, ...]
    mlp_lr: tuple[float, ...]
    mlp_weight_decay: tuple[float, ...]
    mlp_hidden: tuple[int, ...]  # hidden widths; narrower heads are padded and masked in the batch
    mlp_dropout: tuple[float, ...]
    knn_k: tuple[int, ...]  # neighbours; one search with the largest k serves every k
    train: TrainSettings = field(default_factory=TrainSettings)  # epochs, batch size, patience (torch heads)
    # Successive-halving rungs of the MLP sweep (TrainSettings.halving, heads.halving); () = none. MLP configs
    # cost a hidden layer each, so stopping the worse half early saves most of the sweep. Linear heads do not
    # use it: a linear sweep's cost is per-step overhead, which stopping some heads does not reduce.
    mlp_halving: tuple[int, ...] = ()

    def configs(self, head: str) -> list[dict]:
        """The hyperparameter dicts of one head's sweep, in a fixed order (ties in selection go to the first);
        the head's kind reads the values it sweeps from this grid (heads.registry)."""
        return get_head(head).configs(self)

    def size(self, head: str) -> int:
        return len(self.configs(head))


_GRIDS = (
    # A first look in seconds even on a laptop CPU: 5 + 2 + 2 + 2 configs.
    SweepGrid(
        name="quick",
        logreg_C=tuple(np.logspace(-3, 1, 5).tolist()),
        linear_lr=(1e-3, 1e-2),
        linear_weight_decay=(1e-4,),
        mlp_lr=(1e-3,),
        mlp_weight_decay=(1e-4,),
        mlp_hidden=(256,),
        mlp_dropout=(0.0, 0.3),
        knn_k=(5, 15),
        train=TrainSettings(epochs=30, batch_size=256, patience=5),
    ),
    # The grid the README numbers use: 13 + 9 + 16 + 4 configs.
    SweepGrid(
        name="default",
        logreg_C=tuple(np.logspace(-4, 2, 13).tolist()),
        linear_lr=(1e-3, 3e-3, 1e-2),
        linear_weight_decay=(0.0, 1e-4, 1e-2),
        # 16 MLP configs: every config is a full hidden layer on 1,024-d features, so the grid is sized to keep
        # the whole default sweep well under one frozen-backbone epoch (benchmarks/heads.py; README, Benchmarks).
        mlp_lr=(1e-3, 3e-3),
        mlp_weight_decay=(1e-4, 1e-2),
        mlp_hidden=(64, 256),
        mlp_dropout=(0.0, 0.3),
        knn_k=(5, 15, 31, 63),
        # Batch 512: on the real Kaggle cache (3 seeds, linear + MLP sweeps, quiet machine) 12.2 s against 17.0 s
        # at 256 (the sweep's cost is per-step overhead), selected val AUROC within 0.0006 and test within 0.0006.
        train=TrainSettings(epochs=40, batch_size=512, patience=6),
        # 16 -> 8 -> 4 -> 2 -> 1 MLP configs still training after epochs 1, 2, 4 and 8, the worse half by val
        # loss stopping at each (deterministic: ties go to the earlier config). On issue 13's real Kaggle cache
        # every config used to run all 40 epochs. Measured there (3 seeds, MLP sweep alone, quiet machine): rungs
        # (2, 4, 8, 16) took 17.8 s, these 11.6 s, with the same selected val AUROC for seed 0 (0.9957) and
        # within 0.0003 for seeds 1-2; the first epoch of all 16 configs is most of what remains.
        mlp_halving=(1, 2, 4, 8),
    ),
)
# The CLI offers heads.SWEEP_NAMES, kept free of imports; tests/heads/test_cli.py checks it names these grids.
SWEEPS: dict[str, SweepGrid] = {grid.name: grid for grid in _GRIDS}


def get_sweep(name: str) -> SweepGrid:
    try:
        return SWEEPS[name]
    except KeyError:
        raise ConfigError(f"unknown sweep {name!r}; expected one of {', '.join(SWEEPS)}") from None
