"""Durable file writes: the one place headstart touches the file system's durability primitives.

Every file headstart publishes is written to a temporary name in the same folder, fsync-ed, renamed over the
target with os.replace (atomic on POSIX) and the folder fsync-ed, so a crash leaves the old or the new file,
never a torn one. The cache, run records, the report and fine-tune checkpoints all publish through here, so
it sits below every stage; tests inject ENOSPC by monkeypatching the functions of this module.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path


def fsync_file(path: str | Path) -> None:
    """Flush a closed file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Make a rename or unlink inside `path` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders; the rename is still atomic
    finally:
        os.close(fd)


def replace_durably(src: str | Path, dst: str | Path) -> None:
    """fsync `src`, rename it onto `dst` atomically, then fsync the folder."""
    fsync_file(src)
    os.replace(src, dst)
    fsync_dir(Path(dst).parent)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or all of the new one."""
    write_chunks_atomic(path, (data,))


def write_chunks_atomic(path: str | Path, chunks: Iterable[bytes]) -> None:
    """`write_bytes_atomic` for data made a chunk at a time, so the whole of it is never held at once."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        replace_durably(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def is_disk_full(exc: BaseException) -> bool:
    """True for out-of-space errors, including HDF5's errno-less write failures on a full disk."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
