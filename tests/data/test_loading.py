"""The loader recipe and the 'workers never raise' rule that extraction and fine-tuning share."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from headstart.data.loading import decode_or_error, make_loader
from headstart.data.types import Sample
from headstart.errors import DataError

SAMPLE = Sample(id="train/a.png", label=0, path="/data/train/a.png")


def test_a_decode_failure_comes_back_as_one_line_naming_the_file():
    assert decode_or_error(SAMPLE, lambda: 7) == (7, "")
    assert decode_or_error(SAMPLE, _raise(DataError("/data/train/a.png: truncated"))) == (
        None, "/data/train/a.png: truncated")
    value, error = decode_or_error(SAMPLE, _raise(ZeroDivisionError("division by zero")))
    assert value is None and error == "/data/train/a.png: cannot decode image (ZeroDivisionError: division by zero)"
    value, error = decode_or_error(Sample(id="train/00003", label=1), _raise(DataError("")))
    assert value is None and error.startswith("train/00003: cannot decode image")  # never an empty (= ok) error


def test_loader_keeps_order_and_workers_persist_only_when_asked():
    data = TensorDataset(torch.arange(10))
    loader = make_loader(data, batch_size=4, workers=0, pin_memory=False)
    assert [b[0].tolist() for b in loader] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert not loader.persistent_workers and loader.prefetch_factor is None
    kept = make_loader(data, batch_size=4, workers=2, pin_memory=False, persistent=True, drop_last=True,
                       sampler=list(reversed(range(10))))
    assert kept.persistent_workers and kept.prefetch_factor == 4
    assert [b[0].tolist() for b in kept] == [[9, 8, 7, 6], [5, 4, 3, 2]]
    assert not make_loader(data, batch_size=4, workers=0, pin_memory=False, persistent=True).persistent_workers


def _raise(exc: Exception):
    def decode():
        raise exc

    return decode
