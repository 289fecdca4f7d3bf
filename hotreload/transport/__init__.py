"""The transport seam: everything hotreload asks of a server, as raw bytes and field maps.

`open_transport` picks the implementation from the configuration; `MemoryServer` /
`MemoryTransport` give the same semantics in-process (tests, the demo). The Redis implementations
(`hotreload.transport.redis.RedisTransport`, `hotreload.transport.cluster.ClusterTransport`,
`hotreload.transport.sentinel.SentinelTransport`) are imported only when a configuration asks
for one.
"""

from __future__ import annotations

import typing

from .. import errors
from .base import (
    HEAD_PROTOCOL,
    CacheStore,
    Commit,
    CommitResult,
    Message,
    RawHead,
    RawLeaves,
    RawLoad,
    RawSurvey,
    Subscription,
    Transport,
)
from .memory import MemoryServer, MemoryTransport

if typing.TYPE_CHECKING:
    from ..config import HotReloadConfig

    def _memory_is_a_transport(memory: MemoryTransport) -> Transport:  # checked by mypy only
        return memory

__all__ = [
    "HEAD_PROTOCOL",
    "CacheStore",
    "Commit",
    "CommitResult",
    "MemoryServer",
    "MemoryTransport",
    "Message",
    "RawHead",
    "RawLeaves",
    "RawLoad",
    "RawSurvey",
    "Subscription",
    "Transport",
    "is_outage",
    "open_transport",
]

_REDIS_SCHEMES = ("redis", "rediss", "unix")


def open_transport(config: HotReloadConfig) -> Transport:
    """The transport ``config.redis`` describes: a Redis Cluster (``redis.cluster``, or a
    ``redis+cluster://`` URL), a master behind Sentinel (``redis.sentinel``), or one server
    (``redis://``, ``rediss://``, ``unix://``)."""
    if config.redis.mode == "cluster":
        from .cluster import ClusterTransport

        return ClusterTransport(config.redis, prefix=config.prefix)
    if config.redis.mode == "sentinel":
        from .sentinel import SentinelTransport

        return SentinelTransport(config.redis, prefix=config.prefix)
    url = config.redis.effective_url()
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in _REDIS_SCHEMES:
        from .redis import RedisTransport

        return RedisTransport(config.redis, prefix=config.prefix)
    raise errors.ConfigError(f"redis.url {config.redis.display_url()}: unsupported scheme "
                             f"{scheme or '(none)'!r}; use redis://, rediss://, unix:// or "
                             "redis+cluster://")



def is_outage(exc: BaseException) -> bool:
    """True if ``exc`` means the link to the server failed (retry later), not that the server
    refused one command.

    ``exc`` is what a transport raised: a `BackendError` is judged by the driver's error it
    wraps (its ``__cause__``), so a refused or cut connection or a timeout is an outage and an
    error reply (``WRONGTYPE``, ``OOM``, ``READONLY``...) or a `BackendError` of its own is not.
    A bare socket error or timeout is an outage too.
    """
    cause = exc.__cause__ if isinstance(exc, errors.BackendError) else exc
    if isinstance(cause, (OSError, TimeoutError)):  # ConnectionError is an OSError
        return True
    if type(cause).__module__.startswith("redis."):  # redis-py is loaded: its error is here
        from ._client import OUTAGE_ERRORS

        return isinstance(cause, OUTAGE_ERRORS)
    return False
