"""The daemon's self-reported status in Redis: written by each daemon, read by ``status``.

Each daemon writes one JSON document named ``{host}:{pid}`` through the transport
(`Transport.write_status`) every `STATUS_INTERVAL` seconds, expiring after three intervals, so a
daemon that died disappears from the list by itself, and a stopped one deletes its document on
the way out. This module needs none of the daemon extra: ``hotreload status`` reads through it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from typing import Any

from ..config import HotReloadConfig
from ..errors import HotReloadError, describe_error
from ..transport import Transport, open_transport

log = logging.getLogger("hotreload.daemon")

STATUS_INTERVAL = 2.0
STATUS_TTL = 3 * STATUS_INTERVAL


def status_name(host: str | None = None, pid: int | None = None) -> str:
    """``{host}:{pid}`` (this process's by default): the name of a daemon's status document."""
    host = host if host is not None else socket.gethostname()
    pid = pid if pid is not None else os.getpid()
    return f"{host}:{pid}"


async def write_status(transport: Transport, name: str, status: dict[str, Any]) -> bool:
    """Write the status with its TTL; False (and a debug line) if Redis is unreachable."""
    doc = json.dumps(status, default=str, sort_keys=True).encode()
    try:
        await transport.write_status(name, doc, STATUS_TTL)
    except HotReloadError as exc:
        log.debug("could not write the daemon status: %s", describe_error(exc))
        return False
    return True


async def delete_status(transport: Transport, name: str) -> None:
    try:
        await transport.delete_status(name)
    except HotReloadError as exc:
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
    config: HotReloadConfig, *, transport: Transport | None = None,
) -> list[dict[str, Any]]:
    """The status of every live daemon of this prefix (sorted by host, then pid).

    Reads through ``transport`` if given (it stays open), else through one opened for
    ``config`` and closed again. Raises `BackendError` if Redis cannot be read.
    """
    own = transport is None
    t = transport if transport is not None else open_transport(config)
    out: list[dict[str, Any]] = []
    try:
        for raw in await t.read_statuses():
            try:
                doc = json.loads(raw)
            except ValueError:
                log.debug("ignoring a malformed daemon status")
                continue
            if isinstance(doc, dict):
                out.append(doc)
    finally:
        if own:
            await t.aclose()
    return sorted(out, key=lambda d: (str(d.get("host", "")), _pid(d)))


def _pid(doc: dict[str, Any]) -> int:
    pid = doc.get("pid")
    return pid if isinstance(pid, int) else 0
