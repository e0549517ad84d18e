"""Image sources (folders, CSV manifests, MedMNIST .npz, DICOM), decoding, splits and the synthetic demo set.

`build_dataset(DATA, split_config=...)` is the entry point: detect the source, carve splits, flag duplicates.
"""

from headstart.data.dataset import build_dataset, manifest_hash
from headstart.data.decode import decode_image
from headstart.data.sources import load_source
from headstart.data.splits import assign_splits
from headstart.data.types import SPLITS, Dataset, ImageSource, Sample, SplitConfig

__all__ = [
    "SPLITS",
    "Dataset",
    "ImageSource",
    "Sample",
    "SplitConfig",
    "assign_splits",
    "build_dataset",
    "decode_image",
    "load_source",
    "manifest_hash",
]
