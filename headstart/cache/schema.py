"""The documented on-disk layout of a headstart feature cache: names, attributes and file-name conventions.

Everything that knows a path inside the HDF5 file or a sibling file name (staging area, lock) reads it here,
so the README table, the writer, the reader and `verify` cannot drift apart.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from headstart import CACHE_FORMAT_VERSION

FORMAT_NAME = "headstart-cache"  # root attr `format`: tells a headstart cache from any other HDF5 file
FORMAT_VERSION = CACHE_FORMAT_VERSION  # root attr `format_version`; readers refuse newer versions

# Root attributes stored as plain scalars; every other root attribute is a JSON string.
ROOT_PLAIN_ATTRS = ("format", "format_version", "manifest_hash", "samples_sha256", "created_by", "task")

SAMPLES = "samples"  # group: one row per image, in table order
SAMPLE_FIELDS = ("id", "label", "split", "group")  # datasets inside /samples
META = "meta"  # group /samples/meta: one (N,) dataset per image metadata field (header.read_meta)
META_PATH = f"{SAMPLES}/{META}"
# Multi-label caches (root attr task = "multilabel"): /samples/labels (N, L) int8 holds the raw codes (1 positive,
# 0 negative, -1 uncertain, -2 blank; headstart.data.labelcodes), its columns named by root attr `labels` (JSON
# list, equal to `classes`); /samples/label is -1 in every row (no single class). Root attr `label_codes` (JSON)
# spells the codes out for outside readers.
LABEL_MATRIX = "labels"
FEATURES = "features"  # group: /features/<name> (N, D) float16|float32
VALID = "valid"  # group: /valid/<name> (N,) bool; False = image skipped, its feature row is zeros

FEATURE_DTYPES = ("float16", "float32")
EXTERNAL = "external"  # the weights tag and source kind of features written by `write_features`
# Feature-set attributes stored as JSON strings; the rest are plain scalars (str, float, int, bool).
FEATURE_JSON_ATTRS = ("preprocessing", "fingerprint_parts", "fingerprint_digests", "versions", "skipped_ids",
                      "sanity")
FEATURE_STAT_KEYS = ("device", "seconds", "images_per_second", "precision", "batch_size")

# ~1 MiB per chunk: large enough that reads stream, small enough that one damaged chunk names a narrow row range.
# Uncompressed: gzip-1 saved 19% but read 14x slower (lzf saved 4%), and heads re-read the cache on every run;
# fletcher32 is always on so `verify` and `load` detect damage to the data itself.
CHUNK_BYTES = 1 << 20
MAX_SKIPPED_IDS_ATTR = 1000  # skipped ids listed in the attribute; /valid/<name> is the complete record

# HDF5 object names: a set name becomes a path component, so keep it to a safe alphabet.
SET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-:+]*$")  # `:`/`+`: backbones.names.feature_set_name

STAGING_SUFFIX = ".parts"  # sibling folder holding an in-progress extraction (state.json, row journals)
LOCK_SUFFIX = ".lock"  # sibling file flock-ed by the single writer
JOURNAL_SUFFIX = ".journal"  # sibling undo journal of an in-place add (publish.py)
STAGING_STATE = "state.json"
STAGING_FORMAT = "headstart-staging"
STAGING_VERSION = 2  # 2: rows written into set files with a row journal (1: npz parts)
LIBVER = ("v108", "latest")  # 1.8 file format: dense attribute storage, readable by every h5py in use
SET_FEATURES, SET_VALID = "/features", "/valid"  # the two datasets of a staged set file


def _sibling(path: str | Path, suffix: str) -> Path:
    path = Path(path)
    return path.with_name(path.name + suffix)


def staging_dir(path: str | Path) -> Path:
    """Where a resumable extraction into `path` keeps its finished batches."""
    return _sibling(path, STAGING_SUFFIX)


def set_file_name(name: str, fingerprint: str) -> str:
    """A set file name no other set file of the cache has (a set extracted again gets a new one): a random part."""
    return f"{re.sub(r'[^A-Za-z0-9_.+-]', '_', name)}.{fingerprint[:12]}.{secrets.token_hex(4)}.h5"


def lock_path(path: str | Path) -> Path:
    """The file a writer of `path` holds an exclusive flock on."""
    return _sibling(path, LOCK_SUFFIX)


def chunk_rows(dim: int, itemsize: int, n_rows: int) -> int:
    """Rows per chunk so that one chunk holds about CHUNK_BYTES."""
    return max(1, min(n_rows, CHUNK_BYTES // max(1, dim * itemsize)))


def journal_path(path: str | Path) -> Path:
    """The undo journal beside `path` while feature sets are added to it in place."""
    return _sibling(path, JOURNAL_SUFFIX)
