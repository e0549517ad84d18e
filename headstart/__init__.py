"""headstart: cached-feature transfer learning for medical images.

Extract frozen-backbone embeddings once into an HDF5 cache, then train and compare heads in seconds.
"""

__version__ = "0.1.0"

# Version of the on-disk cache layout. Readers refuse files with a newer major format.
CACHE_FORMAT_VERSION = 1
