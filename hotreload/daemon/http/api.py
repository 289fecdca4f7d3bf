"""The console's JSON API (read-only; docs/daemon.md lists every document).

``GET /api/namespaces``, ``GET /api/namespaces/{ns}``, ``GET /api/namespaces/{ns}/propagation``
and ``GET /api/events`` (server-sent events: ``change`` whenever a head or a presence record of
a namespace shown changes).
"""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web

from .console import Console

__all__ = ["CONSOLE", "KEEPALIVE_SECONDS", "setup"]

#: The console an application serves: ``request.app[CONSOLE]``.
CONSOLE: web.AppKey[Console] = web.AppKey("console", Console)

#: An event stream sends a comment this often when nothing changes (proxies close idle ones).
KEEPALIVE_SECONDS: Final = 15.0
#: How soon a browser reconnects a dropped event stream (milliseconds).
RETRY_MS: Final = 1000


def _json(doc: Any, status: int = 200) -> web.Response:
    body = json.dumps(doc, ensure_ascii=False, default=str, separators=(",", ":"))
    return web.Response(text=body, status=status, content_type="application/json")


def _not_shown(ns: str) -> web.Response:
    return _json({"error": f"namespace {ns!r} is not shown by this console (not fed by the "
                           "daemon's sources nor listed in daemon.console.namespaces)"}, 404)


async def namespaces(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    await console.fresh()
    return _json(console.overview())


async def namespace(request: web.Request) -> web.Response:
    console, ns = request.app[CONSOLE], request.match_info["ns"]
    if not console.shows(ns):
        return _not_shown(ns)
    await console.fresh()
    return _json(console.namespace(ns))


async def propagation(request: web.Request) -> web.Response:
    console, ns = request.app[CONSOLE], request.match_info["ns"]
    if not console.shows(ns):
        return _not_shown(ns)
    await console.fresh()
    return _json(console.propagation(ns))


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``hello`` at once, then ``change`` with the namespaces changed."""
    console = request.app[CONSOLE]
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                       "Cache-Control": "no-store",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    with console.watching():
        generation = console.generation
        try:
            await resp.write(f"retry: {RETRY_MS}\n".encode()
                             + _event("hello", {"generation": generation}))
            while not console.closed:
                changed = await console.wait_change(generation, KEEPALIVE_SECONDS)
                if console.closed:
                    break
                if changed is None:
                    await resp.write(b": keepalive\n\n")
                    continue
                generation = console.generation
                await resp.write(_event("change", {"generation": generation,
                                                   "namespaces": changed}))
        except (ConnectionResetError, ConnectionError):
            pass  # the browser went away
    return resp


def setup(app: web.Application) -> None:
    app.router.add_get("/api/namespaces", namespaces)
    app.router.add_get("/api/namespaces/{ns}", namespace)
    app.router.add_get("/api/namespaces/{ns}/propagation", propagation)
    app.router.add_get("/api/events", events, allow_head=False)
