"""Versions of the packages that shape the numbers: written into every cache feature set and every run record.

It sits below every stage, so extraction (stage one) can stamp its features without importing `evaluation`.
"""

from __future__ import annotations

import platform
from importlib import metadata

# The packages whose versions can move a feature or a metric; read from installed metadata, never imported.
PACKAGES = ("headstart", "numpy", "scikit-learn", "scipy", "torch", "torchvision", "h5py")


def collect_versions() -> dict[str, str]:
    """Versions of the packages that shape the numbers, read from metadata (no import of torch)."""
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions
