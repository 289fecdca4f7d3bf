"""`create_app`: the aiohttp application of a daemon, with every group of routes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from . import api, guard, health, page
from .base import DAEMON, HttpDaemon
from .console import Console


def create_app(daemon: HttpDaemon, console: Console | None = None, *,
               loopback: bool = True) -> web.Application:
    """The application serving ``daemon``; each route module registers itself here.

    With a ``console``, the page and the JSON API are served too, behind `guard.middleware`
    (its token; ``loopback``: the server listens on a loopback address, so only loopback
    ``Host`` names are answered), and the console polls while the application runs.
    """
    app = web.Application()
    app[DAEMON] = daemon
    health.setup(app)
    if console is not None:
        app[api.CONSOLE] = console
        app.middlewares.append(guard.middleware(console.token, loopback=loopback))
        app.on_response_prepare.append(guard.secure_headers)
        api.setup(app)
        page.setup(app)
        app.cleanup_ctx.append(_polling)
        app.on_shutdown.append(_end_streams)
    return app


async def _polling(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[api.CONSOLE].run(), name="hotreload-console")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _end_streams(app: web.Application) -> None:
    app[api.CONSOLE].close()
