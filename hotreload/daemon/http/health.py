"""``/healthz`` (the process answers), ``/readyz`` (it can do its job: 503 with the reason when
not) and ``/metrics`` (Prometheus text format). GET and HEAD."""

from __future__ import annotations

import json
from typing import Final

from aiohttp import web
from prometheus_client import generate_latest

from .base import DAEMON

#: The Prometheus text exposition format, as scrapers have always been served it here.
METRICS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    ready, details = request.app[DAEMON].readiness()
    body = json.dumps({"ready": ready, **details}, default=str) + "\n"
    return web.Response(text=body, content_type="application/json", status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[DAEMON].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)  # HEAD too
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
