"""The CPU default decodes each batch in threads between forwards: the same batches as the DataLoader path, the
same cache, and `--workers N` still means N processes."""

from __future__ import annotations

import h5py
import numpy as np
import torch

from headstart.extract.config import ExtractConfig
from headstart.extract.loader import ThreadedBatches, collate_crops, decode_plan
from headstart.extract.runner import run_extract

CPU = torch.device("cpu")


def _cfg(**kw) -> ExtractConfig:
    return ExtractConfig(**{"backbones": ["resnet18"], "weights": "random", "image_size": 32, "batch_size": 8, **kw})


def test_the_plan_threads_only_by_default_on_a_cpu_with_pil_decode():
    workers, threads = decode_plan(None, CPU)
    assert workers == 0 and threads >= 1
    assert decode_plan(2, CPU) == (2, 0)  # an explicit --workers is processes
    assert decode_plan(0, CPU) == (0, 0)
    assert decode_plan(None, CPU, decode="device")[1] == 0


def test_threaded_batches_keep_order_and_ragged_end():
    items = [{"row": i, "ok": True, "error": "", "meta": "", "g": torch.full((1, 2, 2), i, dtype=torch.uint8)}
             for i in range(11)]
    batches = list(ThreadedBatches(items, batch_size=4, threads=3,
                                   collate_fn=lambda b: collate_crops(b, geometries={"g": None})))
    assert len(ThreadedBatches(items, batch_size=4, threads=3, collate_fn=list)) == 3
    assert [b["row"].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    assert batches[2]["g"][:, 0, 0, 0].tolist() == [8, 9, 10]


def test_threads_and_a_worker_process_write_the_same_cache(phantom_dir, tmp_path):
    out = {}
    for label, workers in (("threads", None), ("process", 1)):
        path = tmp_path / f"{label}.h5"
        run_extract(data=str(phantom_dir), output=str(path), config=_cfg(workers=workers))
        with h5py.File(path, "r") as f:
            out[label] = (f["features/resnet18"][()], f["samples/id"][()])
    np.testing.assert_array_equal(out["threads"][1], out["process"][1])
    np.testing.assert_array_equal(out["threads"][0], out["process"][0])
