"""Device rules shared by extraction and fine-tuning: one LOCAL_RANK -> GPU mapping, a scoped cuDNN flag."""

from __future__ import annotations

import pytest
import torch

from headstart import device as device_mod
from headstart import distributed
from headstart.errors import ConfigError


def test_auto_device_and_the_process_group_map_local_rank_to_the_same_gpu(monkeypatch):
    # torch.device("cuda", i) is only a name, so the mapping is testable without a GPU.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert device_mod.resolve_device("auto") == distributed.local_gpu() == torch.device("cuda", 1)
    assert distributed.local_gpu(2) == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "x")
    with pytest.raises(ConfigError, match="LOCAL_RANK='x' is not an integer"):
        device_mod.resolve_device("auto")


def test_auto_is_the_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert device_mod.resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("before", [False, True])
def test_cudnn_benchmark_is_restored_even_after_an_error(monkeypatch, before):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", before)
    with pytest.raises(RuntimeError, match="boom"), device_mod.cudnn_benchmark(torch.device("cuda", 0)):
        assert torch.backends.cudnn.benchmark is True
        raise RuntimeError("boom")
    assert torch.backends.cudnn.benchmark is before
    with device_mod.cudnn_benchmark(torch.device("cpu")):
        assert torch.backends.cudnn.benchmark is before  # the CPU never touches the flag


def test_precision_names_are_written_once():
    from headstart.cli.options import precision_option
    from headstart.finetune import config as finetune_config
    from headstart.precision import PRECISIONS

    assert device_mod.PRECISIONS is PRECISIONS and finetune_config.PRECISIONS is PRECISIONS

    @precision_option
    def command(precision: str) -> None: ...

    [option] = command.__click_params__
    assert tuple(option.type.choices) == PRECISIONS
