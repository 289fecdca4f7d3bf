"""The daemon's self-reported status in Redis: written by each daemon, read by ``status``.

Each daemon writes one JSON document to ``{prefix}:daemon:{host}:{pid}`` every
`STATUS_INTERVAL` seconds with a TTL of three intervals, so a daemon that died disappears from
the list by itself and a stopped one deletes its key on the way out.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from typing import Any

import redis.asyncio as aioredis

from ..config import HotReloadConfig
from ..connection import REDIS_ERRORS, describe_error, make_client, wrap_errors

log = logging.getLogger("hotreload.daemon")

STATUS_INTERVAL = 2.0
STATUS_TTL = 3 * STATUS_INTERVAL


def status_key(prefix: str, host: str | None = None, pid: int | None = None) -> str:
    """``{prefix}:daemon:{host}:{pid}`` (this process's key by default)."""
    host = host if host is not None else socket.gethostname()
    pid = pid if pid is not None else os.getpid()
    return f"{prefix}:daemon:{host}:{pid}"


async def write_status(client: aioredis.Redis, key: str, status: dict[str, Any]) -> bool:
    """SET the status with its TTL; False (and a debug line) if Redis is unreachable."""
    try:
        await client.set(key, json.dumps(status, default=str, sort_keys=True),
                         px=int(STATUS_TTL * 1000))
    except REDIS_ERRORS as exc:
        log.debug("could not write the daemon status: %s", describe_error(exc))
        return False
    return True


async def delete_status(client: aioredis.Redis, key: str) -> None:
    try:
        await client.delete(key)
    except REDIS_ERRORS as exc:
        log.debug("could not delete the daemon status: %s", describe_error(exc))


def describe_daemon(doc: dict[str, Any]) -> list[str]:
    """Human lines for one daemon's status (what ``hotreload status`` prints)."""
    versions = ", ".join(f"{ns} v{v}" for ns, v in sorted(doc.get("versions", {}).items()))
    head = (f"daemon {doc.get('host')}:{doc.get('pid')} {doc.get('role') or 'role unknown'}, "
            f"redis {doc.get('redis')}" + (f", published {versions}" if versions else ""))
    lines = [head]
    if doc.get("leader_error"):
        lines.append(f"  leader lock: {doc['leader_error']}")
    if doc.get("redis_error"):
        lines.append(f"  redis: {doc['redis_error']}")
    for ns, detail in sorted(doc.get("publish_errors", {}).items()):
        lines.append(f"  publishing {ns} fails (retried with backoff): {detail}")
    lines += [f"  conflict: {detail}" for detail in doc.get("conflicts", [])]
    for name, src in sorted(doc.get("sources", {}).items()):
        counts = ", ".join(f"{r}={n}" for r, n in sorted(src.get("rejections", {}).items()))
        running = src.get("running")
        state = {True: "running", False: "NOT running"}.get(running, "state unknown")
        error = src.get("last_error")
        line = f"  source {name}: {state}" + (f", rejections {counts}" if counts else "")
        if error:
            line += f"; last error ({error.get('reason')}): {error.get('detail')}"
        lines.append(line)
    return lines


async def read_daemon_status(
    config: HotReloadConfig, *, client: aioredis.Redis | None = None
) -> list[dict[str, Any]]:
    """The status of every live daemon of this prefix (sorted by host, then pid)."""
    own = client is None
    redis = client if client is not None else make_client(config)
    out: list[dict[str, Any]] = []
    try:
        async with wrap_errors("reading the daemons' status"):
            keys = [k async for k in redis.scan_iter(match=f"{config.prefix}:daemon:*",
                                                       count=200)]
            values = await redis.mget(keys) if keys else []
        for key, raw in zip(keys, values, strict=True):
            if raw is None:
                continue  # expired between SCAN and MGET
            try:
                doc = json.loads(raw)
            except ValueError:
                log.debug("ignoring a malformed daemon status at %r", key)
                continue
            if isinstance(doc, dict):
                out.append(doc)
    finally:
        if own:
            await redis.aclose()
    return sorted(out, key=lambda d: (str(d.get("host", "")), int(d.get("pid", 0) or 0)))
