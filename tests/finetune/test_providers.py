"""`finetune -b timm:NAME` and `-b xrv:NAME` with the freeze modes torchvision models have: `partial` trains the
provider's last stage and the head, `backbone` only the head, with the frozen part's BatchNorm statistics kept."""

from __future__ import annotations

import pytest
import torch

from headstart.backbones.registry import create_model, split_parameters
from headstart.data.types import SplitConfig
from headstart.finetune.train import run_finetune
from tests.finetune.conftest import tiny_config


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from headstart.data.synthetic import make_phantom_dataset

    return make_phantom_dataset(tmp_path_factory.mktemp("ft-providers") / "cxr", n_train=12, n_test=4, val=4,
                                image_size=40, seed=2)


@pytest.mark.parametrize("backbone,size,freeze,package", [
    ("timm:resnet18", 32, "partial", "timm"),
    ("xrv:densenet121-res224-all", None, "backbone", "torchxrayvision"),
])
def test_provider_backbones_fine_tune_with_their_freeze_mode(small, tmp_path, backbone, size, freeze, package):
    pytest.importorskip(package, reason=f"{package} is not installed (pip install 'headstart[...]' for its extra)")
    config = tiny_config(backbone=backbone, image_size=size, freeze=freeze, epochs=1, batch_size=8, lr=0.05)
    record = run_finetune(data=str(small), runs_dir=str(tmp_path), config=config, split_config=SplitConfig())
    assert record.backbone == backbone and record.metrics["test"]["auroc"] is not None
    trained = torch.load(tmp_path / record.run_id / "checkpoints" / "last.pt", weights_only=True)["model"]

    initial, _, _ = create_model(backbone, num_classes=2, weights="random", image_size=size, seed=0)
    groups = split_parameters(initial, backbone)
    names = {id(p): n for n, p in initial.named_parameters()}
    changed = {names[id(p)] for group in groups.values() for p in group
               if not torch.equal(trained[names[id(p)]], p.detach())}
    trainable = {names[id(p)] for group in ("head", "last_stage")[: 2 if freeze == "partial" else 1]
                 for p in groups[group]}
    assert changed and changed <= trainable  # nothing outside the freeze mode's groups moved
    assert any(n.startswith("head.") for n in changed)
    if freeze == "partial":
        assert changed - {n for n in changed if n.startswith("head.")}  # the provider's last stage trained too
    frozen_stats = [n for n, b in initial.named_buffers() if n.endswith("running_mean")
                    and not any(n.startswith(t.rsplit(".", 1)[0] + ".") for t in trainable)]
    assert frozen_stats and all(torch.equal(trained[n], dict(initial.named_buffers())[n]) for n in frozen_stats)
