"""Kept so that `headstart.cache.resplit.publish_splits` still imports: it lives in `headstart.cache.writer`."""

from headstart.cache.writer import publish_splits  # noqa: F401
