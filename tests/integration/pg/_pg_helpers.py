"""Helpers for the PostgreSQL tests: a recording sink, psql, a throwaway cluster."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import psycopg.conninfo
from pydantic import SecretStr

from hotreload.config import PostgresSettings

PG_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
PG_BIN = Path("/usr/lib/postgresql/15/bin")


async def wait_until(cond: Callable[[], bool], limit: float = 10.0, what: str = "") -> None:
    """Wait for a condition with a deadline (polls; never a bare sleep as synchronisation)."""
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit} s waiting for {what or cond}")
        await asyncio.sleep(0.02)


@dataclass
class RecordingSink:
    """A `Sink` that records every call."""

    desired_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    invalidations: list[tuple[str, tuple[str, ...], tuple[str, ...], bool]] = field(
        default_factory=list)
    rejections: list[tuple[str, str, str]] = field(default_factory=list)
    accepted_count: int = 0

    async def desired(self, namespace: str, document: Mapping[str, Any], *, source: str) -> None:
        assert source == "postgres"
        self.desired_calls.append((namespace, dict(document)))

    async def invalidate(self, namespace: str, keys: Sequence[str] = (),
                         prefixes: Sequence[str] = (), *, everything: bool = False,
                         source: str) -> None:
        assert source == "postgres"
        self.invalidations.append((namespace, tuple(keys), tuple(prefixes), everything))

    def rejected(self, source: str, reason: str, detail: str) -> None:
        self.rejections.append((source, reason, detail))

    def accepted(self, source: str) -> None:
        self.accepted_count += 1

    def last(self, namespace: str) -> dict[str, Any] | None:
        docs = [doc for ns, doc in self.desired_calls if ns == namespace]
        return docs[-1] if docs else None

    async def wait_desired(self, namespace: str, doc: dict[str, Any],
                           limit: float = 10.0) -> None:
        await wait_until(lambda: self.last(namespace) == doc, limit,
                         f"desired {namespace}={doc}, last={self.last(namespace)}")


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def make_settings(url: str = PG_URL, **kw: Any) -> PostgresSettings:
    """Settings with unique names; ``application_name`` (in the DSN) identifies the backends."""
    app = unique("hr_app")
    sep = "&" if "?" in url else "?"
    base: dict[str, Any] = {
        "dsn": SecretStr(f"{url}{sep}application_name={app}"),
        "settings_table": unique("hr_t"),
        "notify_channel": unique("hr_c"),
        "heartbeat_channel": unique("hr_hb"),
        "heartbeat_interval": 0.5,
        "heartbeat_timeout": 3.0,
        "reconnect_backoff_max": 0.5,
        "connect_timeout": 2,
        "leader_lock_key": int(uuid.uuid4().int % 2**62),
    }
    base.update(kw)
    return PostgresSettings(**base)


# --------------------------------------------------------------------------- throwaway cluster


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(*args: str) -> list[str]:
    cmd = list(args)
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class Cluster:
    """A throwaway PostgreSQL instance on a free loopback port."""

    datadir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), *args),
                       check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-w", "-l", str(self.datadir / "log"), "-o", opts, "start")

    def stop(self, mode: str = "immediate") -> None:
        self._ctl("-w", "-m", mode, "stop")


async def psql(url: str, command: str) -> str:
    """Run the real ``psql`` binary."""
    proc = await asyncio.create_subprocess_exec(
        "psql", url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", command,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise AssertionError(f"psql failed: {err.decode()}")
    return out.decode()


async def terminate(settings: PostgresSettings, url: str = PG_URL) -> int:
    """pg_terminate_backend every session of ``settings`` (by its application_name); wait."""
    app = psycopg.conninfo.conninfo_to_dict(settings.dsn.get_secret_value())["application_name"]
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        cur = await admin.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) "
            "FROM pg_stat_activity WHERE application_name = %s", (app,))
        row = await cur.fetchone()
    return int(row[0]) if row else 0


class BlackHoleProxy:
    """A loopback TCP proxy to PostgreSQL whose open links can be silently black-holed."""

    def __init__(self, target_port: int = 5432) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._frozen: set[int] = set()
        self._links: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def url(self, dbname: str = "test") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def freeze(self) -> None:
        """From now on, drop every byte of the links open so far (new links work)."""
        self._frozen |= self._links

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        link = id(writer)
        self._links.add(link)
        self._writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(link, src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, link: int, src: asyncio.StreamReader,
                    dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                if link not in self._frozen:
                    dst.write(data)
                    await dst.drain()
        except OSError:
            pass
        if link not in self._frozen:
            dst.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for w in self._writers:
            w.close()
        if self._server is not None:
            await self._server.wait_closed()
