"""The streamed safetensors writer: files safetensors itself reads back, and no whole-payload copy in memory."""

import hashlib
import tracemalloc

import numpy as np
import pytest
from safetensors.numpy import load

from headstart.heads import tensor_file
from headstart.heads.knn import KNNHead
from headstart.heads.persist import load_head, save_head
from headstart.heads.tensor_file import Stored, write_safetensors


def test_safetensors_reads_what_is_streamed(tmp_path, monkeypatch):
    monkeypatch.setattr(tensor_file, "BLOCK_BYTES", 40)  # many blocks, ragged ends
    rng = np.random.default_rng(0)
    arrays = {"rows": rng.standard_normal((37, 5)).astype(np.float32), "cube": rng.integers(0, 9, (3, 4, 2)),
              "flags": rng.random(11) > 0.5, "empty": np.zeros((0, 7), np.float32), "scalar": np.float64(2.5),
              "narrowed": Stored.of(rng.standard_normal((19, 3)), "float16")}
    tensors = {k: v if isinstance(v, Stored) else Stored.of(v) for k, v in arrays.items()}
    digest, size = write_safetensors(tmp_path / "t.safetensors", tensors, {"kind": "test"})
    payload = (tmp_path / "t.safetensors").read_bytes()
    assert (digest, size) == (hashlib.sha256(payload).hexdigest(), len(payload))
    back = load(payload)
    for name, value in arrays.items():
        expected = value.array.astype(value.dtype) if isinstance(value, Stored) else np.asarray(value)
        assert back[name].dtype == expected.dtype and np.array_equal(back[name], expected), name


def test_unsupported_dtype_is_refused(tmp_path):
    with pytest.raises(TypeError, match="complex128"):
        write_safetensors(tmp_path / "t.safetensors", {"z": Stored.of(np.zeros(2, np.complex128))}, {})
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_saving_a_knn_head_holds_no_copy_of_its_rows(tmp_path):
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((20000, 256)).astype(np.float32), rng.integers(0, 2, 20000)
    head = KNNHead(k=5).fit(X, y)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        save_head(tmp_path, head, classes=["a", "b"], threshold=0.5, feature_set={"dtype": "float16"})
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 0.1 * head.train_.nbytes + 2 * tensor_file.BLOCK_BYTES  # was 1.0 (float16 copy + payload)
    back = load_head(tmp_path)
    np.testing.assert_array_equal(back.train_, head.train_)  # float32 on a float16 set: the rows evaluated
