"""`SentinelTransport`: the transport over a Redis master found through Redis Sentinel.

redis-py's asyncio ``Sentinel`` finds the master, and a connection to a master that was demoted
(it answers READONLY) is closed and the command retried. Four guards keep a failover from going
wrong here:

- every (re)connect asks the sentinels where the master is (redis-py 8.1 reconnects a failed
  connection to its last address, redis-py issue 3874), and checks ``ROLE``: a server that is
  not a master is refused (a sentinel's view may be a moment behind);
- every write asks a sentinel first who the master is: after ``SENTINEL FAILOVER`` the old
  master accepts writes until the sentinels reconfigure it (up to ~10 s later), and a write
  there would be lost; a changed answer closes the idle connections to the old master;
- a subscription's every `ping` checks the same in the background and moves a subscription
  still on the old master to the new one (it yields ``subscribed`` again).

A write that fails anyway (the master died mid-call) raises `BackendError`; the caller retries,
and the retry finds the new master.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from ..config import RedisSettings
from ..wire.names import DEFAULT_PREFIX
from ._client import REDIS_ERRORS, describe_error, keepalive_options
from ._client import failed as _failed
from .base import Commit, CommitResult
from .redis import RedisSubscription, RedisTransport

__all__ = ["SentinelSubscription", "SentinelTransport", "build_sentinel_client"]

log = logging.getLogger("hotreload.transport")

_MASTER: Final = (b"master", "master")


class _MasterConnection(SentinelManagedConnection):
    """A connection to the master: it asks the sentinels where the master is on every connect
    (redis-py reconnects a failed connection to its last address: redis-py issue 3874), then
    checks that the server is a master."""

    async def connect_to(self, address: tuple[str, int]) -> None:
        self.host, self.port = address  # just discovered (redis-py's own connect path)
        await super().connect_check_health(check_health=self.connection_pool.check_connection,
                                           retry_socket_connect=False)

    async def connect_check_health(self, check_health: bool = True,
                                   retry_socket_connect: bool = True) -> None:
        if self.connection_pool.is_master and not self.is_connected:
            self.host, self.port = await self.connection_pool.get_master_address()
        await super().connect_check_health(check_health, retry_socket_connect)

    async def on_connect_check_health(self, check_health: bool = True) -> None:
        await super().on_connect_check_health(check_health)
        if not self.connection_pool.is_master:
            return
        await self.send_command("ROLE", check_health=False)
        role = await self.read_response()
        if not role or role[0] not in _MASTER:
            await self.disconnect()
            raise RedisConnectionError(
                f"{self.host}:{self.port} is not a master (the sentinels' view is behind)")


class _MasterSSLConnection(_MasterConnection, SSLConnection):
    pass


class _Sentinel(Sentinel):
    """redis-py's ``discover_master`` moves the sentinel that answered to the front of
    ``self.sentinels`` by a swap across awaits: two concurrent calls (a reconnect, a write
    guard, a subscription's check) can duplicate one client and lose another, which then is
    never closed. Discoveries here run one at a time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2
        self._discovering = asyncio.Lock()

    async def discover_master(self, service_name: str) -> Any:
        async with self._discovering:
            return await super().discover_master(service_name)


def _addresses(nodes: list[str]) -> list[tuple[str, int]]:
    out = []
    for node in nodes:
        host, _, port = node.rpartition(":")
        out.append((host, int(port)))
    return out


def build_sentinel_client(s: RedisSettings, *, retries: int = 3) -> tuple[Sentinel,
                                                                          aioredis.Redis]:
    """The ``Sentinel`` of ``s.sentinel`` and a client of its master (keepalives, timeouts,
    bounded jittered retries, the ROLE check)."""
    conf = s.sentinel
    if conf is None:
        raise ValueError("not a sentinel configuration")
    socket = {"socket_connect_timeout": s.connect_timeout, "socket_timeout": s.socket_timeout,
              "socket_keepalive": True, "socket_keepalive_options": keepalive_options(s)}
    # One attempt per sentinel: discovery tries the next one, and a command's own retries
    # run discovery again.
    sentinel_kwargs: dict[str, Any] = {**socket, "retry": Retry(NoBackoff(), 0)}
    if conf.sentinel_username:
        sentinel_kwargs["username"] = conf.sentinel_username
    if conf.sentinel_password is not None and conf.sentinel_password.get_secret_value():
        sentinel_kwargs["password"] = conf.sentinel_password.get_secret_value()
    kwargs: dict[str, Any] = {
        **socket,
        "protocol": s.protocol,
        "max_connections": s.pool_size,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.5), retries),
        "decode_responses": False,
        "db": s.db,
        "connection_class": _MasterSSLConnection if s.tls else _MasterConnection,
    }
    if s.username:
        kwargs["username"] = s.username
    if s.password.get_secret_value():
        kwargs["password"] = s.password.get_secret_value()
    if s.tls:
        kwargs["ssl"] = True
        for key, value in (("ssl_ca_certs", s.tls_ca_file), ("ssl_certfile", s.tls_cert_file),
                           ("ssl_keyfile", s.tls_key_file)):
            if value:
                kwargs[key] = value
    sentinel = _Sentinel(_addresses(conf.nodes), sentinel_kwargs=sentinel_kwargs)
    return sentinel, sentinel.master_for(conf.master, **kwargs)


class SentinelTransport(RedisTransport):
    """The transport over the master ``settings.sentinel`` names."""

    def __init__(self, settings: RedisSettings, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.sentinel, client = build_sentinel_client(settings)
        super().__init__(settings, prefix=prefix, client=client)
        self._own_client = True

    @property
    def pool(self) -> SentinelConnectionPool:
        pool = self.client.connection_pool
        if not isinstance(pool, SentinelConnectionPool):  # pragma: no cover - built above
            raise TypeError("the master's client lost its sentinel pool")
        return pool

    async def master_address(self) -> tuple[str, int]:
        """Ask the sentinels who the master is; when it changed, the idle connections to the
        old one are closed (new ones go to the new master)."""
        try:
            host, port = await self.pool.get_master_address()  # type: ignore[no-untyped-call]
        except REDIS_ERRORS as exc:
            raise _failed(f"asking the sentinels at {self.describe()} for the master",
                          exc) from exc
        return str(host), int(port)

    # ------------------------------------------------------------------ writes

    async def commit(self, ns: str, commit: Commit) -> CommitResult:
        await self.master_address()
        return await super().commit(ns, commit)

    async def write_checkpoint(self, ns: str, epoch: str, version: int,
                               fields: Mapping[str, str | bytes]) -> bool:
        await self.master_address()
        return await super().write_checkpoint(ns, epoch, version, fields)

    async def send_invalidation(self, ns: str, *, expect: tuple[str, int] | None, epoch: str,
                                seq: int, event: bytes, log_maxlen: int) -> CommitResult:
        await self.master_address()
        return await super().send_invalidation(ns, expect=expect, epoch=epoch, seq=seq,
                                               event=event, log_maxlen=log_maxlen)

    async def retire_legacy(self, ns: str, notice: bytes, ttl: float) -> int:
        await self.master_address()
        return await super().retire_legacy(ns, notice, ttl)

    # ------------------------------------------------------------------ factories

    def subscription(self, ns: str) -> SentinelSubscription:
        k = self.keys(ns)
        return SentinelSubscription(self, {k.config_channel: "config",
                                           k.inv_channel: "invalidate"})

    async def aclose(self) -> None:
        await super().aclose()
        try:
            await self.sentinel.aclose()
        except REDIS_ERRORS as exc:
            log.debug("closing the sentinel links failed: %s", describe_error(exc))


class SentinelSubscription(RedisSubscription):
    """A `RedisSubscription` on the master; every `ping` also asks the sentinels (in the
    background) whether the master moved, and moves the subscription if it did."""

    def __init__(self, transport: SentinelTransport, channels: Mapping[str, Any]) -> None:
        super().__init__(transport.client, channels)
        self._t = transport
        self._probe: asyncio.Task[None] | None = None

    async def ping(self) -> None:
        await super().ping()
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._check_master())

    async def _check_master(self) -> None:
        conn = self._pubsub.connection
        if conn is None or not conn.is_connected:
            return
        try:
            master = await self._t.master_address()
        except REDIS_ERRORS as exc:
            log.debug("asking the sentinels for the master failed: %s", describe_error(exc))
            return
        if (str(conn.host), int(conn.port)) != master and not self._closed:
            log.info("the master moved to %s:%d: subscribing there", *master,
                     extra={"action": "failover"})
            await self.drop()  # the next read reconnects to the master and re-subscribes

    async def aclose(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)
        await super().aclose()
