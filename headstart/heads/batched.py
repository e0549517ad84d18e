"""Many torch heads trained at once as one batched model (the dinov2 linear-eval idea).

K heads of one kind share a device-resident feature tensor and the same minibatch order. Their weights are
stacked (`headstart.heads.stacked`), so one `matmul` serves every head. Each head keeps its own learning
rate, weight decay, hidden width and dropout, and stops early on its own val loss. A head that stops is frozen
at its best weights and leaves the stacked model, so it costs no more FLOPs (on real features most heads stop
long before the slowest one). With `TrainSettings.halving`, successive halving also stops the worse half of a
seed's heads at a few rung epochs (`headstart.heads.halving`). Several seeds train in one loop
(`train_batched_seeds`): the features are standardised and made resident once for every head and seed.

`LinearHead.fit` and `MLPHead.fit` are the K = 1 case of `train_batched`, so "a head trained in a sweep equals
the same head trained alone" holds by construction (for every head that successive halving did not stop).
Everything that could couple heads is made per head or made independent of K:
- initial weights come from a generator seeded per head (the same seed gives the same init at any K);
- dropout noise is a counter-based hash of (seed, step, row, unit), not a draw whose layout depends on K;
- the loss is a per-head mean summed over heads, so one head's gradient never sees another's;
- AdamW is written out element-wise (`headstart.heads.batched_adamw`), so per-head lr and weight decay are
  plain broadcasts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from headstart.device import autocast
from headstart.errors import ConfigError
from headstart.heads.batched_adamw import BatchedAdamW
from headstart.heads.batched_data import TrainData
from headstart.heads.halving import halving_survivors
from headstart.heads.stacked import EVAL_CHUNK, StackedHeads

log = logging.getLogger(__name__)
_VIEW_STREAM = 104_729  # salt of the per-seed view draws: the minibatch order stays the one without views


@dataclass(frozen=True)
class TorchHeadConfig:
    """The hyperparameters that may differ between heads trained in one batch."""

    lr: float = 1e-3  # peak AdamW learning rate, decayed by a cosine schedule
    weight_decay: float = 1e-4  # decoupled (AdamW) decay on weights, not biases
    hidden: int = 0  # hidden width; 0 means a linear head
    dropout: float = 0.0  # dropout on the hidden layer (MLP only)


@dataclass(frozen=True)
class TrainSettings:
    """What every head of one batch shares: they walk the same minibatches for the same number of steps."""

    epochs: int = 50  # maximum epochs; early stopping usually ends sooner
    batch_size: int = 256  # rows per minibatch, drawn in the same order for every head
    patience: int = 8  # epochs without a val-loss improvement before a head is frozen
    class_weight: str | None = None  # "balanced" weights the loss by inverse class frequency; None = uniform
    min_delta: float = 1e-4  # a val-loss drop smaller than this is not an improvement
    min_steps_per_epoch: int = 8  # small train sets get smaller batches, so a short schedule still converges
    # Successive-halving rungs: at the end of each listed epoch, the worse half (by best val loss so far) of
    # each seed's heads still training stops (heads.halving). () = every head runs until its own early stop.
    halving: tuple[int, ...] = ()
    precision: str = "fp32"  # "bf16": training steps under bf16 autocast; the rest fp32 (device.head_precision)

    def batch_rows(self, n_rows: int) -> int:
        """Rows per minibatch: `batch_size`, lowered for small train sets to keep `min_steps_per_epoch`."""
        return max(1, min(self.batch_size, math.ceil(n_rows / self.min_steps_per_epoch)))


@dataclass
class HeadResult:
    """One trained head: its weights (CPU tensors), standardisation, history and val probabilities."""

    config: TorchHeadConfig
    params: dict[str, torch.Tensor]  # linear: W (D, C), b (C,); mlp: W1, b1, W2, b2
    mean: np.ndarray  # feature mean on train, used to standardise inputs
    scale: np.ndarray  # feature std on train
    n_classes: int
    best_epoch: int  # 1-based epoch whose weights were kept
    history: list[dict] = field(default_factory=list)  # per epoch: train/val loss and accuracy
    val_proba: np.ndarray | None = None  # (n_val, C) at the kept weights, when val was given
    halted_at: int | None = None  # the epoch at which successive halving stopped this head (heads.halving)
    link: str = "softmax"  # "sigmoid" for a multi-label head: one probability per finding


def train_batched(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    *,
    configs: list[TorchHeadConfig],
    settings: TrainSettings = TrainSettings(),
    n_classes: int | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> list[HeadResult]:
    """Train every config at once; return one `HeadResult` per config, in order.

    `y_*` are integer class indices in [0, n_classes). Without val, every head trains for all epochs and
    keeps its last weights.
    """
    (results,) = train_batched_seeds(X_train, y_train, X_val, y_val, configs=configs, settings=settings,
                                     n_classes=n_classes, device=device, seeds=(seed,))
    return results


def train_batched_seeds(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    *,
    configs: list[TorchHeadConfig],
    settings: TrainSettings = TrainSettings(),
    n_classes: int | None = None,
    device: torch.device | str = "cpu",
    seeds: Sequence[int] = (0,),
    views: np.ndarray | None = None,
    mask_train: np.ndarray | None = None,
    mask_val: np.ndarray | None = None,
) -> list[list[HeadResult]]:
    """`train_batched` for several seeds in one loop: the features are standardised and made resident once and
    shared by every head and seed; one `HeadResult` list per seed, each equal to `train_batched` at that seed.

    One stacked model per hidden width (padding narrow heads to the widest would waste their FLOPs) holds every
    seed's heads as extra heads, each seed's block walking that seed's own minibatch order; one step serves
    every seed, which is what a linear sweep (cheap FLOPs, per-step overhead) needs. Every width draws the same
    minibatch order from a seed, so results do not depend on the grouping.

    `views` (N, K, D), cached augmented views of the train rows (`heads --views on`): each epoch every row is
    one of its K + 1 views (the plain one included), drawn per seed and epoch; standardised with the plain
    rows' moments, so prediction is unchanged.

    Multi-label: `y_*` are (N, L) 0/1 targets and `mask_*` (N, L) the labels to use (None: all); each head has
    one sigmoid output per finding and trains on masked BCE (`TrainData.loss`). A finding with one class among
    its train labels is not trained: its output bias is NaN, so its probabilities are NaN.
    """
    if not configs:
        return [[] for _ in seeds]
    if len({c.hidden > 0 for c in configs}) > 1:
        raise ConfigError("train_batched got linear (hidden=0) and MLP configs together; batch one kind at a time")
    seeds = [int(s) for s in seeds]
    if len(set(seeds)) < len(seeds):
        raise ConfigError(f"seeds {seeds} repeat a seed; expected distinct seeds (a repeat would be the same run)")
    data = TrainData.prepare(X_train, y_train, X_val, y_val, n_classes=n_classes, class_weight=settings.class_weight,
                             device=torch.device(device), views=views, mask_train=mask_train, mask_val=mask_val)
    groups = [_Group(data, [i for i, c in enumerate(configs) if c.hidden == width], configs, settings=settings,
                     seeds=seeds)
              for width in sorted({c.hidden for c in configs})]
    for epoch in range(1, settings.epochs + 1):
        for group in groups:
            if group.training:
                group.run_epoch(epoch)
        if data.has_val and epoch in settings.halving:
            for seed in seeds:
                _halve(groups, seed=seed, n_configs=len(configs), epoch=epoch)
        for group in groups:
            group.compact()
        if not any(group.training for group in groups):
            log.debug("every head stopped by epoch %d", epoch)
            break
    by_head: dict[tuple[int, int], HeadResult] = {}
    for group in groups:
        by_head.update(zip(zip(group.head_seed.tolist(), group.head_config.tolist()), group.results()))
    return [[by_head[seed, i] for i in range(len(configs))] for seed in seeds]


class _Group:
    """The heads of one hidden width, every seed's in turn: a stacked model, its optimiser, each seed's minibatch
    order and each head's early-stopping state. Heads that stop leave the stacked model (`compact`), so they
    cost nothing."""

    def __init__(self, data: TrainData, index: list[int], configs: list[TorchHeadConfig], *, settings: TrainSettings,
                 seeds: list[int]) -> None:
        self.data, self.settings = data, settings
        self.head_config = np.array([i for _ in seeds for i in index])  # each head's position in `configs`
        self.head_seed = np.array([seed for seed in seeds for _ in index])
        self.configs = [configs[i] for i in self.head_config]
        device = data.xt.device
        self.model = StackedHeads([c.hidden for c in self.configs], [c.dropout for c in self.configs],
                                  dim=data.xt.shape[1], n_classes=data.n_classes, seed=self.head_seed.tolist(),
                                  device=device)
        self.opt = make_optimiser(self.model, self.configs, device=device)
        self.batch = settings.batch_rows(data.xt.shape[0])
        self.total_steps = settings.epochs * math.ceil(data.xt.shape[0] / self.batch)
        self.perm_gens = {seed: torch.Generator().manual_seed(seed) for seed in seeds}
        self.view_gens = {seed: torch.Generator().manual_seed(seed + _VIEW_STREAM) for seed in seeds}
        K = len(self.configs)
        # per-head state, on the CPU: one sync per epoch reads the losses
        self.active = np.ones(K, dtype=bool)
        self.best_loss = np.full(K, np.inf, dtype=np.float32)
        self.best_epoch = np.zeros(K, dtype=np.int64)
        self.since_best = np.zeros(K, dtype=np.int64)
        self.halted_at: list[int | None] = [None] * K
        self.histories: list[list[dict]] = [[] for _ in range(K)]
        self.best = self.model.snapshot()
        self.step = 0
        self.training = True

    def run_epoch(self, epoch: int) -> None:
        """One epoch of every head in the batch, then val loss, early stopping and history."""
        data, model, device = self.data, self.model, self.data.xt.device
        N, K_live = data.xt.shape[0], len(model.live)
        blocks = model.seed_blocks()
        perms = [torch.randperm(N, generator=self.perm_gens[seed]).to(device) for seed, _, _ in blocks]
        rows = [data.epoch_rows(self.view_gens[seed]) for seed, _, _ in blocks]  # plain, or one view per row
        block_sizes = torch.tensor([end - start for _, start, end in blocks], device=device)
        everyone = torch.ones(K_live, dtype=torch.bool, device=device)
        loss_sum = torch.zeros(K_live, device=device)
        correct = torch.zeros(K_live, device=device)
        for start in range(0, N, self.batch):
            idx = [perm[start : start + self.batch] for perm in perms]
            xb = torch.stack([x[i] for x, i in zip(rows, idx)])  # (S, B, D): each seed's own minibatch
            yb = torch.stack([data.yt[i] for i in idx]).repeat_interleave(block_sizes, dim=0)  # (K, B[, L])
            mb = None if data.mt is None else torch.stack([data.mt[i] for i in idx]).repeat_interleave(
                block_sizes, dim=0)
            with autocast(device, torch.bfloat16 if self.settings.precision == "bf16" else None):
                logits = model(xb, noise_key=self.step, blocks=blocks).float()  # (K, B, C)
            per_head = data.loss(logits, yb, mb)  # (K,)
            model.zero_grad()
            per_head.sum().backward()
            lr_scale = 0.5 * (1.0 + math.cos(math.pi * self.step / self.total_steps))
            self.opt.step(lr_scale=lr_scale, active=everyone)
            with torch.no_grad():
                loss_sum += per_head.detach() * yb.shape[1]
                correct += data.hits(logits, yb, mb)
            self.step += 1
        if data.has_val:
            val_loss, val_acc = _evaluate(model, data)
        else:
            val_loss = val_acc = torch.full((K_live,), float("nan"), device=device)
        rows = torch.stack([loss_sum / N, correct / data.scored(data.mt, N), val_loss,
                            val_acc]).cpu().numpy()  # one sync per epoch; accuracy over rows, or known labels
        live = model.live.numpy()
        if data.has_val:
            improved = rows[2] < self.best_loss[live] - self.settings.min_delta
            model.copy_heads_into(self.best, torch.as_tensor(improved, device=device))
            self.best_loss[live] = np.where(improved, rows[2], self.best_loss[live])
            self.best_epoch[live] = np.where(improved, epoch, self.best_epoch[live])
            self.since_best[live] = np.where(improved, 0, self.since_best[live] + 1)
            self.active[live] &= self.since_best[live] < self.settings.patience
        else:
            self.best_epoch[live] = epoch
        for i, k in enumerate(live):
            self.histories[k].append({"epoch": epoch, "train_loss": float(rows[0, i]),
                                      "train_accuracy": float(rows[1, i]), "val_loss": _nan_to_none(rows[2, i]),
                                      "val_accuracy": _nan_to_none(rows[3, i])})

    def halt(self, keep: np.ndarray, epoch: int) -> None:
        """Stop the training heads where `keep` (K,) is False, as successive halving decided at `epoch`."""
        for k in np.flatnonzero(self.active & ~keep):
            self.halted_at[k] = epoch
        self.active &= keep

    def compact(self) -> None:
        """Drop stopped heads from the stacked model and its optimiser; their best weights stay in `best`."""
        if not self.training:
            return
        keep = np.flatnonzero(self.active[self.model.live.numpy()])
        if len(keep) == 0:
            self.training = False
        elif len(keep) < len(self.model.live):
            index = torch.as_tensor(keep)
            self.model.keep(index)
            self.opt.keep(index, list(self.model.parameters()))

    def results(self) -> list[HeadResult]:
        """Each head at its kept weights (best val loss, or the last epoch without val), in group order."""
        data, model = self.data, self.model
        if data.has_val:
            model.load(self.best)
        val_proba = _predict(model, data.xv, data.link).cpu().numpy() if data.has_val else None
        params = model.per_head_params()
        if data.multilabel and data.untrained.any():  # untrained findings answer NaN, here and once saved
            if val_proba is not None:
                val_proba[:, :, data.untrained] = np.nan
            for p in params:
                last = "b2" if "b2" in p else "b"
                p["W2" if "W2" in p else "W"][:, torch.from_numpy(data.untrained)] = 0.0
                p[last][torch.from_numpy(data.untrained)] = float("nan")
        return [HeadResult(config=cfg, params=params[k], mean=data.mean, scale=data.scale, n_classes=data.n_classes,
                           best_epoch=int(self.best_epoch[k]), history=self.histories[k],
                           val_proba=None if val_proba is None else val_proba[k], halted_at=self.halted_at[k],
                           link="sigmoid" if data.multilabel else "softmax")
                for k, cfg in enumerate(self.configs)]


def _halve(groups: list[_Group], *, seed: int, n_configs: int, epoch: int) -> None:
    """Successive halving over one seed's heads in every group, ranked in config order (heads.halving)."""
    best_loss, training = np.full(n_configs, np.inf), np.zeros(n_configs, dtype=bool)
    for g in groups:
        mine = g.head_seed == seed
        best_loss[g.head_config[mine]], training[g.head_config[mine]] = g.best_loss[mine], g.active[mine]
    keep = halving_survivors(best_loss, training)
    for g in groups:
        g.halt(np.where(g.head_seed == seed, keep[g.head_config], True), epoch)


def make_optimiser(model: StackedHeads, configs: list[TorchHeadConfig], *, device: torch.device) -> BatchedAdamW:
    """AdamW with each head's own lr and weight decay; weights decay, biases do not."""
    names = [name for name, _ in model.named_parameters()]
    return BatchedAdamW(model.parameters(), decays=[n.startswith("W") for n in names], lr=[c.lr for c in configs],
                        weight_decay=[c.weight_decay for c in configs], device=device)


@torch.no_grad()
def _evaluate(model: StackedHeads, data: TrainData):
    """Every head's val loss (as train's, combined exactly over chunks) and accuracy (rows, or known labels)."""
    model.eval()
    x, y, m = data.xv, data.yv, data.mv
    K = len(model.live)
    loss, correct = torch.zeros(K, device=x.device), torch.zeros(K, device=x.device)
    w_total = data.loss_weight(y, m)
    for start in range(0, x.shape[0], EVAL_CHUNK):
        logits = model(x[start : start + EVAL_CHUNK])
        yb = y[start : start + EVAL_CHUNK]
        mb = None if m is None else m[start : start + EVAL_CHUNK]
        loss += data.loss(logits, yb, mb) * data.loss_weight(yb, mb)
        correct += data.hits(logits, yb, mb)
    model.train()
    return loss / w_total.clamp(min=1e-12), correct / data.scored(m, x.shape[0])


@torch.no_grad()
def _predict(model: StackedHeads, x: torch.Tensor, link=lambda z: torch.softmax(z, -1)) -> torch.Tensor:
    model.eval()
    out = torch.cat([link(model(x[s : s + EVAL_CHUNK])) for s in range(0, x.shape[0], EVAL_CHUNK)],
                    dim=1)
    model.train()
    return out


def _nan_to_none(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)
