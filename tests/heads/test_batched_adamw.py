"""The batched sweep's hand-written AdamW against torch.optim.AdamW: K heads trained as one stacked model end
where K heads trained one by one, each with its own torch.optim.AdamW, end."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from headstart.heads.batched import TorchHeadConfig, make_optimiser
from headstart.heads.batched_adamw import ADAM_BETAS, ADAM_EPS, BatchedAdamW
from headstart.heads.stacked import StackedHeads

CPU = torch.device("cpu")
LRS = (1e-3, 3e-2, 1e-2, 5e-3)
WEIGHT_DECAYS = (0.0, 1e-2, 1e-4, 0.5)
STEPS = 60
FROZEN_FROM = {3: 25}  # head 3 stops early at step 25, as an early-stopped head does in a sweep
D, C = 12, 3


def _lr_scale(step: int) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * step / STEPS))  # the sweep's cosine schedule


def _alone_forward(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    if "W" in p:
        return x @ p["W"] + p["b"]
    return torch.relu(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]


@pytest.mark.parametrize("widths", [(0, 0, 0, 0), (8, 16, 8, 5)], ids=["linear", "mlp-mixed-widths"])
def test_batched_adamw_equals_torch_adamw_per_head(widths):
    K = len(widths)
    configs = [TorchHeadConfig(lr=lr, weight_decay=wd, hidden=h) for lr, wd, h in zip(LRS, WEIGHT_DECAYS, widths)]
    model = StackedHeads(list(widths), [0.0] * K, dim=D, n_classes=C, seed=3, device=CPU)
    batched = make_optimiser(model, configs, device=CPU)  # what train_batched uses

    alone = [{name: torch.nn.Parameter(t) for name, t in p.items()} for p in model.per_head_params()]
    initial = [{name: t.detach().clone() for name, t in p.items()} for p in alone]
    optimisers = [
        torch.optim.AdamW([{"params": [t for n, t in p.items() if n.startswith("W")], "weight_decay": wd},
                           {"params": [t for n, t in p.items() if n.startswith("b")], "weight_decay": 0.0}],
                          lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS)
        for p, lr, wd in zip(alone, LRS, WEIGHT_DECAYS)
    ]

    gen = torch.Generator().manual_seed(0)
    for step in range(STEPS):
        x, y = torch.randn(16, D, generator=gen), torch.randint(0, C, (16,), generator=gen)
        active = torch.tensor([step < FROZEN_FROM.get(k, STEPS) for k in range(K)])
        model.zero_grad()
        per_head = F.cross_entropy(model(x).reshape(K * 16, C), y.repeat(K), reduction="none").view(K, 16).mean(1)
        per_head.sum().backward()
        batched.step(lr_scale=_lr_scale(step), active=active)

        for k, (p, opt) in enumerate(zip(alone, optimisers)):
            if not active[k]:
                continue  # a frozen head takes no step at all
            opt.zero_grad()
            F.cross_entropy(_alone_forward(p, x), y).backward()
            for group in opt.param_groups:
                group["lr"] = LRS[k] * _lr_scale(step)
            opt.step()

    for k, (ours, theirs) in enumerate(zip(model.per_head_params(), alone)):
        for name, t in theirs.items():  # float32 rounding only: max abs difference ~2e-7 after 60 steps
            torch.testing.assert_close(ours[name], t.detach(), rtol=1e-5, atol=1e-6, msg=f"head {k} {name}")
    # not vacuous: every head moved from its start, and the heads ended apart
    moved = [max(float((alone[k][n].detach() - initial[k][n]).abs().max()) for n in initial[k]) for k in range(K)]
    assert min(moved) > 1e-3, moved
    first = [t.detach() for t in alone[0].values()]
    assert not all(torch.allclose(a, b) for a, b in zip(first, alone[1].values()) if a.shape == b.shape)


def test_a_frozen_head_keeps_its_weights_and_the_others_move():
    W0 = torch.randn(2, 4, 2, generator=torch.Generator().manual_seed(1))
    W, b = torch.nn.Parameter(W0.clone()), torch.nn.Parameter(torch.zeros(2, 1, 2))
    opt = BatchedAdamW([W, b], decays=[True, False], lr=(1e-2, 1e-2), weight_decay=(0.1, 0.1), device=CPU)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    for _ in range(5):
        W.grad = b.grad = None
        F.cross_entropy((torch.einsum("bd,kdc->kbc", x, W) + b).reshape(-1, 2), y.repeat(2)).backward()
        opt.step(lr_scale=1.0, active=torch.tensor([True, False]))
    assert torch.equal(W.detach()[1], W0[1]) and torch.equal(b.detach()[1], torch.zeros(1, 2))
    assert not torch.equal(W.detach()[0], W0[0])
