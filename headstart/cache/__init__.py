"""HDF5 feature cache: schema, fingerprints, a resumable atomic writer, and a checking reader."""

from headstart.cache.fingerprint import compute_fingerprint, compute_samples_sha256
from headstart.cache.reader import FeatureCache, verify_cache
from headstart.cache.writer import CacheWriter, FeatureSetSpec, SamplesTable

__all__ = [
    "CacheWriter", "FeatureCache", "FeatureSetSpec", "SamplesTable", "compute_fingerprint",
    "compute_samples_sha256", "verify_cache",
]
