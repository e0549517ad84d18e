"""A safetensors file written as a stream: header, then each tensor's buffer block by block.

`safetensors.numpy.save` builds the whole file in memory (and `bytes()` copies it again), and narrowing kNN's
reference rows to the cache dtype first made one more copy: saving a kNN head on issue 13's 100,000-row cache
took 0.7 copies of the feature matrix on top of the head itself (benchmarks/memory.py). Here each tensor is
cast and written a block of rows at a time, and the sha256 that head.json records is computed on the way.
The layout is the format's own (an 8-byte little-endian header length, a space-padded JSON header, then the
buffers back to back), so `safetensors.numpy.load` reads it like any other file.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from headstart.io import write_chunks_atomic

BLOCK_BYTES = 8 * 2**20  # source bytes cast and written per block
_DTYPES = {"bool": "BOOL", "uint8": "U8", "int8": "I8", "int16": "I16", "uint16": "U16", "float16": "F16",
           "int32": "I32", "uint32": "U32", "float32": "F32", "float64": "F64", "int64": "I64", "uint64": "U64"}


@dataclass(frozen=True)
class Stored:
    """A tensor and the dtype it is stored in (kNN keeps its reference rows in the cache's dtype)."""

    array: np.ndarray
    dtype: np.dtype

    @classmethod
    def of(cls, array: np.ndarray, dtype: str | np.dtype | None = None) -> Stored:
        array = np.asarray(array)
        return cls(array, np.dtype(dtype if dtype is not None else array.dtype).newbyteorder("<"))

    @property
    def nbytes(self) -> int:
        return self.array.size * self.dtype.itemsize

    def blocks(self) -> Iterator[bytes]:
        shape = self.array.shape
        flat = self.array.reshape(shape[0], int(np.prod(shape[1:]))) if len(shape) > 1 else self.array.reshape(-1)
        row_bytes = self.array.itemsize * (flat.shape[1] if flat.ndim > 1 else 1)
        step = max(1, BLOCK_BYTES // max(1, row_bytes))
        for start in range(0, len(flat), step):
            yield np.ascontiguousarray(flat[start:start + step], dtype=self.dtype).tobytes()


def write_safetensors(path: str | Path, tensors: dict[str, Stored], metadata: dict[str, str]) -> tuple[str, int]:
    """Write `tensors` to `path` atomically; return the file's (sha256 hex digest, size in bytes)."""
    header: dict = {"__metadata__": metadata}
    offset = 0
    for name, t in tensors.items():
        code = _DTYPES.get(t.dtype.name)
        if code is None:
            raise TypeError(f"tensor {name!r} has dtype {t.dtype}; safetensors stores only {', '.join(_DTYPES)}")
        header[name] = {"dtype": code, "shape": list(t.array.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format aligns the buffers to 8 bytes
    digest, size = hashlib.sha256(), 0

    def chunks() -> Iterator[bytes]:
        nonlocal size
        for chunk in _file_chunks(text, tensors):
            digest.update(chunk)
            size += len(chunk)
            yield chunk

    write_chunks_atomic(path, chunks())
    return digest.hexdigest(), size


def _file_chunks(header: bytes, tensors: dict[str, Stored]) -> Iterator[bytes]:
    yield struct.pack("<Q", len(header)) + header
    for t in tensors.values():
        yield from t.blocks()
