import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny heads gain nothing from intra-op threads, and on a shared 2-core machine OpenMP spin-waiting made
    them 30x slower; one thread keeps the suite fast and its timings stable."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
