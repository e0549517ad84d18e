"""Backbone tests never touch the network, the user's torch hub cache or the user's Hugging Face cache."""

import json

import pytest


@pytest.fixture(autouse=True)
def offline_hub(tmp_path, monkeypatch):
    """An empty TORCH_HOME and HEADSTART_OFFLINE=1, so `imagenet` weights resolve only from what a test puts there.

    The Hugging Face hub cache (timm and hf: weights) is an empty folder too, with HF_HUB_OFFLINE=1.
    """
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("HEADSTART_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path / "torch_home" / "hub" / "checkpoints"


@pytest.fixture
def fake_hub(tmp_path):
    """Put a repository into the (test-local) hub cache as huggingface_hub lays it out: refs/main -> snapshot."""

    def put(repo: str, files: dict[str, object], revision: str = "0123456789abcdef0123456789abcdef01234567"):
        root = tmp_path / "hf_home" / "hub" / ("models--" + repo.replace("/", "--"))
        snapshot = root / "snapshots" / revision
        snapshot.mkdir(parents=True)
        (root / "refs").mkdir()
        (root / "refs" / "main").write_text(revision)
        for name, content in files.items():
            if callable(content):  # a writer, e.g. model.save_pretrained
                content(snapshot)
            else:
                (snapshot / name).write_text(content if isinstance(content, str) else json.dumps(content))
        return snapshot

    return put
