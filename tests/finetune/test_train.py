"""Fine-tune runs end to end on the phantom set: record contents, freezing, resume and failure handling."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import headstart.finetune.train as train_module
from headstart.backbones.registry import create_model
from headstart.errors import ConfigError, HeadstartError
from headstart.finetune.train import run_finetune

from tests.finetune.conftest import tiny_config

HISTORY_KEYS = {"epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy", "val_auroc", "seconds",
                "images_per_second", "lr"}


def _run(phantom_dir, runs, split_config, **overrides):
    return run_finetune(data=str(phantom_dir), runs_dir=str(runs), config=tiny_config(**overrides),
                        split_config=split_config)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, phantom_dir):
    """An uninterrupted, deterministic 2-epoch full fine-tune (with augmentation) that other tests compare to."""
    from headstart.data.types import SplitConfig

    runs = tmp_path_factory.mktemp("reference")
    record = _run(phantom_dir, runs, SplitConfig())
    return runs, record


def _checkpoint(runs, record, name="last.pt"):
    return torch.load(runs / record.run_id / "checkpoints" / name, weights_only=True)


def test_record_has_the_contract_fields(reference_run, phantom_dir):
    runs, record = reference_run
    data = json.loads((runs / record.run_id / "record.json").read_text())
    assert data["strategy"] == "finetune" and data["head"] is None and data["backbone"] == "resnet18"
    assert data["config"]["freeze"] == "none" and data["config"]["epochs"] == 2
    for split in ("val", "test"):
        for key in ("auroc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1"):
            assert key in data["metrics"][split] and f"{key}_ci" in data["metrics"][split]
    assert [h["epoch"] for h in data["history"]] == [1, 2]
    assert all(HISTORY_KEYS <= set(h) for h in data["history"])
    timing = data["timing"]
    assert timing["extract_seconds"] == 0 and timing["train_seconds"] > 0 and timing["images_per_second"] > 0
    assert timing["train_seconds"] == pytest.approx(sum(h["seconds"] for h in data["history"]))
    test = data["predictions"]["test"]
    assert len(test["ids"]) == len(test["y_true"]) == len(test["proba"]) == 16
    assert 0.0 <= data["threshold"] <= 1.0
    assert data["dataset"]["classes"] == ["NORMAL", "PNEUMONIA"]


def test_full_finetune_moves_batchnorm_statistics(reference_run):
    runs, record = reference_run
    initial, _, _ = create_model("resnet18", num_classes=2, weights="random", image_size=32, seed=0)
    trained = _checkpoint(runs, record)["model"]
    assert not torch.equal(initial.state_dict()["backbone.bn1.running_mean"], trained["backbone.bn1.running_mean"])


def test_freeze_backbone_leaves_backbone_and_batchnorm_untouched(phantom_dir, tmp_path, split_config):
    record = _run(phantom_dir, tmp_path, split_config, freeze="backbone", epochs=1)
    initial, _, _ = create_model("resnet18", num_classes=2, weights="random", image_size=32, seed=0)
    before = initial.state_dict()
    after = _checkpoint(tmp_path, record)["model"]
    backbone_keys = [k for k in before if k.startswith("backbone.")]
    assert any("running_mean" in k for k in backbone_keys)
    changed = [k for k in backbone_keys if not torch.equal(before[k], after[k])]
    assert changed == []
    assert not torch.equal(before["head.weight"], after["head.weight"])
    assert record.config["freeze"] == "backbone"
    assert record.config["gflops"] == pytest.approx(1.814, abs=0.01)  # stamped for the report's cost labels


def test_interrupted_run_resumes_to_the_uninterrupted_history(reference_run, phantom_dir, tmp_path, split_config,
                                                              monkeypatch):
    _, reference = reference_run
    real = train_module.train_one_epoch

    def stop_in_second_epoch(*args, **kwargs):
        if kwargs["epoch"] == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_one_epoch", stop_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        _run(phantom_dir, tmp_path, split_config)
    assert _checkpoint(tmp_path, reference)["epoch"] == 0
    monkeypatch.setattr(train_module, "train_one_epoch", real)

    calls = []
    monkeypatch.setattr(train_module, "train_one_epoch", lambda *a, **k: calls.append(k["epoch"]) or real(*a, **k))
    resumed = run_finetune(data=str(phantom_dir), runs_dir=str(tmp_path), config=tiny_config(),
                           split_config=split_config, resume=True)
    assert calls == [1]  # epoch 1 (0-based) only: nothing repeated
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "val_auroc", "lr"):
        np.testing.assert_allclose([h[key] for h in resumed.history], [h[key] for h in reference.history],
                                   rtol=1e-5, atol=1e-6, err_msg=key)
    np.testing.assert_allclose(resumed.predictions["test"]["proba"], reference.predictions["test"]["proba"],
                               rtol=1e-4, atol=1e-6)


def test_resume_without_checkpoint_is_refused(phantom_dir, tmp_path, split_config):
    with pytest.raises(ConfigError, match="no checkpoint in .*; run without --resume"):
        run_finetune(data=str(phantom_dir), runs_dir=str(tmp_path), config=tiny_config(),
                     split_config=split_config, resume=True)


def test_resume_with_another_configuration_names_the_keys(reference_run, phantom_dir, tmp_path, split_config):
    runs, record = reference_run
    shutil.copytree(runs / record.run_id, tmp_path / record.run_id)
    with pytest.raises(ConfigError, match=r"another configuration: lr \(0.001 in the checkpoint, 0.5 now\)") as info:
        run_finetune(data=str(phantom_dir), runs_dir=str(tmp_path), config=tiny_config(lr=0.5),
                     split_config=split_config, resume=True)
    assert "\n" not in str(info.value)
    from headstart.data.types import SplitConfig

    with pytest.raises(ConfigError, match="data"):
        run_finetune(data=str(phantom_dir), runs_dir=str(tmp_path), config=tiny_config(),
                     split_config=SplitConfig(seed=0, val_fraction=0.3), resume=True)


def test_corrupt_checkpoint_is_one_line(reference_run, phantom_dir, tmp_path, split_config):
    runs, record = reference_run
    shutil.copytree(runs / record.run_id, tmp_path / record.run_id)
    last = tmp_path / record.run_id / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(HeadstartError, match="cannot be read.*delete it and run without --resume") as info:
        run_finetune(data=str(phantom_dir), runs_dir=str(tmp_path), config=tiny_config(),
                     split_config=split_config, resume=True)
    assert "\n" not in str(info.value)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(phantom_dir, tmp_path, split_config, monkeypatch):
    real_create = train_module.create_model

    def poisoned_create(*args, **kwargs):
        model, prep, info = real_create(*args, **kwargs)
        calls = {"n": 0}

        def poison(module, inputs, output):
            if module.training:
                calls["n"] += 1
                if calls["n"] == 5:  # epoch 2, step 2 (3 train steps per epoch)
                    return output * float("nan")
            return output

        model.head.register_forward_hook(poison)
        return model, prep, info

    monkeypatch.setattr(train_module, "create_model", poisoned_create)
    with pytest.raises(HeadstartError) as info:
        _run(phantom_dir, tmp_path, split_config, freeze="backbone", epochs=3)
    message = str(info.value)
    last = tmp_path / "finetune_resnet18_freeze-backbone-32px_s0" / "checkpoints" / "last.pt"
    assert message.startswith("training loss became NaN/Inf at epoch 2 step 2")
    assert f"the last good checkpoint is {last}" in message and "lower --lr or use --precision fp32" in message
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values() if v.is_floating_point())
    assert not (tmp_path / "finetune_resnet18_freeze-backbone-32px_s0" / "record.json").exists()


def test_run_leaves_the_callers_random_generators_untouched(phantom_dir, tmp_path, split_config):
    """run_finetune seeds and draws from the global RNGs (dropout, checkpointed streams) inside a scope: the
    caller's torch, numpy and Python streams continue as if it had not run, after a fresh run and a resume."""
    import random

    def seed_all():
        torch.manual_seed(1234), np.random.seed(1234), random.seed(1234)

    def draws():
        return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]

    seed_all()
    expected = draws()
    for resume in (False, True):
        seed_all()
        before = torch.get_rng_state()
        run_finetune(data=str(phantom_dir), runs_dir=str(tmp_path), config=tiny_config(freeze="backbone", epochs=1),
                     split_config=split_config, resume=resume)
        assert torch.equal(torch.get_rng_state(), before)
        assert draws() == expected


def test_cpu_loaders_decode_in_the_main_process_unless_asked():
    """A decode process beside the CPU's intra-op threads oversubscribes the cores (see loader_workers)."""
    cpu = torch.device("cpu")
    assert train_module.loader_workers(None, cpu) == 0
    assert train_module.loader_workers(2, cpu) == 2
    assert train_module.loader_workers(0, torch.device("cuda", 0)) == 0


def test_checkpoint_digest_covers_tensor_bytes():
    from headstart.finetune.checkpoint import content_digest
    state = {"model": {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, "epoch": 1}
    flipped = {"model": {"w": state["model"]["w"].clone()}, "epoch": 1}
    flipped["model"]["w"].view(torch.int32)[0, 0] ^= 1  # one bit of one weight
    assert content_digest(state) == content_digest({"model": {"w": state["model"]["w"].clone()}, "epoch": 1})
    assert content_digest(state) != content_digest(flipped)


def test_select_metrics_are_the_evaluation_ones_plus_the_val_loss():
    from headstart.evaluation import SELECT_METRICS as EVALUATION
    from headstart.finetune.config import SELECT_METRICS
    from headstart.finetune.objective import SingleLabelObjective, selection_value

    assert SELECT_METRICS == (*EVALUATION, "loss")
    tiny_config(select_metric="balanced_accuracy").validate()
    with pytest.raises(ConfigError, match="select_metric 'precision' is invalid"):
        tiny_config(select_metric="precision").validate()
    y, proba = np.array([0, 0, 1, 1]), np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])
    entry, val = {"val_loss": 0.4}, {"y_true": y, "proba": proba}
    objective = SingleLabelObjective()
    assert selection_value(objective, entry, val, tiny_config(select_metric="loss")) == -0.4
    assert selection_value(objective, entry, val, tiny_config(select_metric="auroc")) == 1.0
    assert selection_value(objective, entry, val, tiny_config(select_metric="brier")) < 0  # lower is better: negated
