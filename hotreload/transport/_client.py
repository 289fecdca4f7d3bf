"""Building redis-py clients from `RedisSettings`, and what a redis-py error may say."""

from __future__ import annotations

import socket
from typing import Any, Final

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from ..config import RedisSettings
from ..errors import BackendError

#: Errors of redis-py (and the socket layer) that mean "the server or the link failed". redis-py's
#: cluster errors that are not `RedisError` (an uncovered slot, no reachable node) included.
REDIS_ERRORS: Final[tuple[type[BaseException], ...]] = (
    redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError)
#: Those of them that mean "the link failed" (retry later), not "the server refused a command"
#: (an error reply such as WRONGTYPE, OOM or READONLY).
OUTAGE_ERRORS: Final[tuple[type[BaseException], ...]] = (
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError, TimeoutError,
)


def keepalive_options(s: RedisSettings) -> dict[int, int]:
    """TCP options so that a half-open link fails within seconds, not minutes."""
    opts: dict[int, int] = {}
    for name, value in (
        ("TCP_KEEPIDLE", s.tcp_keepalive_idle),
        ("TCP_KEEPINTVL", s.tcp_keepalive_interval),
        ("TCP_KEEPCNT", s.tcp_keepalive_count),
        ("TCP_USER_TIMEOUT", s.tcp_user_timeout_ms),
    ):
        const = getattr(socket, name, None)
        if const is not None and value:
            opts[const] = value
    return opts


def build_client(s: RedisSettings, *, retries: int = 3) -> aioredis.Redis:
    """An asyncio client: keepalives, connect and socket timeouts, bounded jittered retries."""
    kwargs: dict[str, Any] = {
        "protocol": s.protocol,
        "max_connections": s.pool_size,
        "socket_connect_timeout": s.connect_timeout,
        "socket_timeout": s.socket_timeout,
        "socket_keepalive": True,
        "socket_keepalive_options": keepalive_options(s),
        "retry": Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.5), retries),
        "decode_responses": False,
    }
    if s.url is None and s.username:
        kwargs["username"] = s.username
    if s.tls or s.effective_url().startswith("rediss://"):
        if s.tls_ca_file:
            kwargs["ssl_ca_certs"] = s.tls_ca_file
        if s.tls_cert_file:
            kwargs["ssl_certfile"] = s.tls_cert_file
        if s.tls_key_file:
            kwargs["ssl_keyfile"] = s.tls_key_file
    try:
        return aioredis.Redis.from_url(s.effective_url(), **kwargs)
    except ValueError:
        # redis-py's message may quote part of the URL, password included: do not repeat it.
        raise BackendError(
            f"invalid Redis URL {s.display_url()}: cannot be parsed (percent-encode special "
            "characters such as @ : / # ? in the password)") from None


def describe_error(exc: BaseException) -> str:
    """A one-line description of a backend error that holds no secret."""
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


def failed(what: str, exc: BaseException) -> BackendError:
    """The `BackendError` for a redis-py error (raise it ``from exc``)."""
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return BackendError(f"{what}: NOPERM {describe_error(exc)}; the Redis user lacks a "
                            "permission (docs/security.md has the ACL)")
    return BackendError(f"{what}: {describe_error(exc)}")


def ms(seconds: float) -> int:
    """A TTL in whole milliseconds, at least 1."""
    return max(1, int(seconds * 1000))
