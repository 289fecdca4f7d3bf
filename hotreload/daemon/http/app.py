"""`create_app`: the aiohttp application of a daemon, with every group of routes."""

from __future__ import annotations

from aiohttp import web

from . import health
from .base import DAEMON, HttpDaemon


def create_app(daemon: HttpDaemon) -> web.Application:
    """The application serving ``daemon``; each route module registers itself here."""
    app = web.Application()
    app[DAEMON] = daemon
    health.setup(app)
    return app
