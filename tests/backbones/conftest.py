"""Backbone tests never touch the network or the user's torch hub cache."""

import pytest


@pytest.fixture(autouse=True)
def offline_hub(tmp_path, monkeypatch):
    """An empty TORCH_HOME and HEADSTART_OFFLINE=1, so `imagenet` weights resolve only from what a test puts there."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("HEADSTART_OFFLINE", "1")
    return tmp_path / "torch_home" / "hub" / "checkpoints"
