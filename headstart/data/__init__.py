"""Image sources (folders, CSV manifests, MedMNIST .npz, DICOM), decoding, splits and the synthetic demo set.

`build_dataset(DATA, split_config=...)` is the entry point: detect the source, carve splits, flag duplicates.
The names below load on first use, so importing a light submodule (`headstart.data.balance` for the CLI's
choices) does not import numpy and PIL.
"""

from __future__ import annotations

import importlib

# public name -> the submodule that defines it
_EXPORTS = {
    "SPLITS": "types", "Dataset": "types", "ImageSource": "types", "Sample": "types", "SplitConfig": "types",
    "assign_splits": "splits", "build_dataset": "dataset", "decode_image": "decode", "load_source": "sources",
    "manifest_hash": "dataset",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
