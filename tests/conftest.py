"""Suite-wide settings: never touch the network, and one torch thread everywhere (no per-area overrides)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HEADSTART_OFFLINE", "1")

import torch  # noqa: E402

# Tiny tensors: one thread avoids oversubscription (measured ~30x slower tiny fits with 2 threads on a busy 2-core box).
torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _offline_torch_home(tmp_path_factory, monkeypatch):
    """An empty hub cache per session, so no test can pick up (or fetch) real weights."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.getbasetemp() / "torch_home"))
    monkeypatch.setenv("HEADSTART_OFFLINE", "1")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (real-data tests run only beside ../shared/data)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    """A tiny Kaggle-layout phantom set shared (read-only) by the whole session."""
    from headstart.data.synthetic import make_phantom_dataset

    return make_phantom_dataset(tmp_path_factory.mktemp("phantom") / "cxr", n_train=48, n_test=16, image_size=40, seed=0)
