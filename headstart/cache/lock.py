"""One writer per cache: an exclusive flock on `<cache>.lock` that says who holds it.

flock is released by the kernel when the holder dies (even on kill -9), so a stale lock file never blocks a
rerun. The file is unlinked on release; acquirers re-check the inode so a lock on an unlinked file never counts.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import logging
import os
import socket
import sys
from pathlib import Path

from headstart.errors import CacheError

logger = logging.getLogger(__name__)


class WriterLock:
    """Context manager holding the exclusive write lock of one cache path."""

    def __init__(self, lock_file: str | Path, *, target: str | Path):
        self.lock_file = Path(lock_file)
        self.target = Path(target)  # the cache path, for messages
        self._fd: int | None = None

    def acquire(self) -> None:
        while True:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                busy = self._busy(fd)
                os.close(fd)
                raise busy from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_file).st_ino
            except FileNotFoundError:
                same = False  # the previous holder unlinked it between our open and flock
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_holder_info()).encode("utf-8"))
        self._fd = fd

    def check_free(self) -> None:
        """Raise the holder's one-line CacheError now when another writer holds the lock, so a second extraction is
        refused before it spends time on models and engines. A probe (the lock taken and dropped at once, never
        created); `acquire` still decides."""
        try:
            fd = os.open(self.lock_file, os.O_RDWR)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise self._busy(fd) from None
        finally:
            os.close(fd)  # closing drops the probe's lock

    def _busy(self, fd: int) -> CacheError:
        return CacheError(f"{self.target} is being written by {_read_holder(fd)}; wait for it to finish")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.lock_file.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> "WriterLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder_info() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(sys.argv),
        "since": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _read_holder(fd: int) -> str:
    """Describe the lock holder from what it wrote; JSON only, never eval."""
    try:
        raw = os.pread(fd, 65536, 0)
        info = json.loads(raw.decode("utf-8"))
        text = f"pid {info['pid']} on host {info['host']} since {info['since']}"
        if info.get("command"):
            text += f" ({info['command']})"
        return text
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (its lock file has no holder details yet)"
