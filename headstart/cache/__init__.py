"""HDF5 feature cache: schema, fingerprints, a planner, a stager, a publisher, the writer, and a checking reader."""

from headstart.cache.fingerprint import compute_fingerprint, compute_samples_sha256
from headstart.cache.reader import FeatureCache, verify_cache
from headstart.cache.request import CacheRequest, FeatureSetSpec, SamplesTable
from headstart.cache.stager import Stager
from headstart.cache.writer import CacheWriter, plan_for

__all__ = [
    "CacheRequest", "CacheWriter", "FeatureCache", "FeatureSetSpec", "SamplesTable", "Stager", "compute_fingerprint",
    "compute_samples_sha256", "plan_for", "verify_cache",
]
