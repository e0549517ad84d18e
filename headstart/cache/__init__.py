"""HDF5 feature cache: schema, fingerprints, a planner, a stager, a publisher, the writer, and a checking reader.

For notebooks: `open_cache(path)` reads a cache as arrays, `write_features(path, ...)` writes one from features
computed elsewhere, and `verify_cache(path)` checks one end to end.
"""

from headstart.cache.external import write_features
from headstart.cache.fingerprint import compute_fingerprint, compute_samples_sha256
from headstart.cache.reader import FeatureCache, verify_cache
from headstart.cache.plan import CacheRequest, FeatureSetSpec, SamplesTable
from headstart.cache.stager import Stager
from headstart.cache.view import Cache, FeatureSet, open_cache
from headstart.cache.writer import CacheWriter, plan_for

__all__ = [
    "Cache", "CacheRequest", "CacheWriter", "FeatureCache", "FeatureSet", "FeatureSetSpec", "SamplesTable", "Stager",
    "compute_fingerprint", "compute_samples_sha256", "open_cache", "plan_for", "verify_cache", "write_features",
]
