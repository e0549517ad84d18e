"""The undo journal that makes adding a feature set to a cache file in place safe against kill -9 and power loss.

HDF5 adds a dataset by appending its chunks at the end of the file and rewriting a little metadata (superblock,
group links, heaps) inside it; the chunks of the sets already there are never touched. So before the file is opened
for writing, `<cache>.journal` records its size and a copy of every byte outside those chunks (the sample table and
metadata: O(N), independent of the feature sets' size), fsync-ed. The journal is deleted once the added sets are
complete and fsync-ed: that is the commit. A writer that finds a journal (the previous one died mid-add) rolls the
file back byte for byte: it truncates it to the recorded size and writes the saved bytes back. Readers refuse a
cache with a journal beside it, so they never see a half-added set.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from pathlib import Path

import h5py

from headstart import io as durable
from headstart.cache.schema import FEATURES

logger = logging.getLogger(__name__)

JOURNAL_SUFFIX = ".journal"
HEAD = struct.Struct("<8sQI")  # magic, header bytes, crc32 of header + saved bytes
MAGIC = b"HSUNDO01"


def journal_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + JOURNAL_SUFFIX)


def write_journal(path: Path) -> None:
    """Save what an in-place add may overwrite in `path`, durably, before it is opened for writing."""
    size = path.stat().st_size
    with h5py.File(path, "r", locking=False) as f:
        kept = sorted((c.byte_offset, c.size) for ds in f[FEATURES].values() if ds.chunks
                      for c in (ds.id.get_chunk_info(i) for i in range(ds.id.get_num_chunks())))
    ranges, at = [], 0
    for offset, length in kept:  # everything between the feature chunks
        if offset > at:
            ranges.append((at, offset - at))
        at = max(at, offset + length)
    if at < size:
        ranges.append((at, size - at))
    with open(path, "rb") as src:
        saved = b"".join(os.pread(src.fileno(), length, offset) for offset, length in ranges)
    head = json.dumps({"size": size, "ranges": ranges}).encode("utf-8")
    body = head + saved
    durable.write_chunks_atomic(journal_path(path), (HEAD.pack(MAGIC, len(head), zlib.crc32(body)), body))


def roll_back(path: Path) -> bool:
    """Undo an interrupted in-place add to `path` (True when there was one). A torn journal means the file was
    not touched yet (it is written and fsync-ed first), so it is simply removed. Caller holds the writer lock."""
    journal = journal_path(path)
    if not journal.exists():
        return False
    data = journal.read_bytes()
    if len(data) >= HEAD.size:
        magic, n_head, crc = HEAD.unpack_from(data)
        body = data[HEAD.size:]
        if magic == MAGIC and zlib.crc32(body) == crc and len(body) >= n_head:
            header = json.loads(body[:n_head].decode("utf-8"))
            saved, at = memoryview(body)[n_head:], 0
            with open(path, "r+b") as f:
                f.truncate(header["size"])
                for offset, length in header["ranges"]:
                    os.pwrite(f.fileno(), saved[at:at + length], offset)
                    at += length
                f.flush()
                os.fsync(f.fileno())
            logger.warning("rolled %s back to before an interrupted add of feature sets (%s)", path, journal)
    journal.unlink()
    durable.fsync_dir(journal.parent)
    return True


def commit(path: Path) -> None:
    """The in-place add is complete and on disk: drop the journal."""
    durable.fsync_file(path)
    journal_path(path).unlink()
    durable.fsync_dir(path.parent)
