"""AdamW over stacked heads, each head with its own learning rate and weight decay."""

from __future__ import annotations

from collections.abc import Sequence

import torch

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


class BatchedAdamW:
    """torch.optim.AdamW's update rule for (K, ...) parameters whose per-head lr and weight decay are (K, 1, 1)
    tensors; `tests/heads/test_batched_adamw.py` checks it against K separate `torch.optim.AdamW`s.

    Hand-written because torch's AdamW takes one lr per param group: a group per head would need per-head
    tensors, undoing the batching.
    """

    def __init__(self, params: Sequence[torch.Tensor], *, decays: Sequence[bool], lr: Sequence[float],
                 weight_decay: Sequence[float], device: torch.device) -> None:
        self.params = list(params)
        self.decays = list(decays)  # whether each tensor takes weight decay (weights do, biases do not)
        self.lr = torch.tensor(list(lr), device=device).view(-1, 1, 1)
        self.wd = torch.tensor(list(weight_decay), device=device).view(-1, 1, 1)
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def keep(self, index: torch.Tensor, params: Sequence[torch.Tensor]) -> None:
        """Follow `StackedHeads.keep`: keep the state of the heads at `index`, now stepping `params`."""
        index = index.to(self.lr.device)
        self.params = list(params)
        self.lr, self.wd = self.lr.index_select(0, index), self.wd.index_select(0, index)
        self.m = [m.index_select(0, index) for m in self.m]
        self.v = [v.index_select(0, index) for v in self.v]

    @torch.no_grad()
    def step(self, *, lr_scale: float, active: torch.Tensor) -> None:
        """One update at `lr_scale` times each head's lr; heads where `active` (K,) is False get lr 0."""
        self.t += 1
        b1, b2 = ADAM_BETAS
        bc1, bc2 = 1 - b1**self.t, 1 - b2**self.t
        lr = self.lr * lr_scale * active.view(-1, 1, 1).to(self.lr.dtype)
        for p, m, v, decays in zip(self.params, self.m, self.v, self.decays):
            if p.grad is None:
                continue
            g = p.grad
            if decays:
                p.mul_(1 - lr * self.wd)
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v / bc2).sqrt_().add_(ADAM_EPS)
            p.sub_(lr / bc1 * m / denom)
