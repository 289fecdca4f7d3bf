"""The transport seam: everything hotreload asks of a server, as raw bytes and field maps.

`open_transport` picks the implementation from the configuration; `MemoryServer` /
`MemoryTransport` give the same semantics in-process (tests, the demo). The Redis implementations
(`hotreload.transport.redis.RedisTransport`, `hotreload.transport.cluster.ClusterTransport`,
`hotreload.transport.sentinel.SentinelTransport`) are imported only when a configuration asks
for one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError
from .base import (
    HEAD_PROTOCOL,
    CacheStore,
    Commit,
    CommitResult,
    Message,
    RawHead,
    RawLeaves,
    RawLoad,
    Subscription,
    Transport,
)
from .memory import MemoryServer, MemoryTransport

if TYPE_CHECKING:
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
    "Subscription",
    "Transport",
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
    raise ConfigError(f"redis.url {config.redis.display_url()}: unsupported scheme "
                      f"{scheme or '(none)'!r}; use redis://, rediss://, unix:// or "
                      "redis+cluster://")
