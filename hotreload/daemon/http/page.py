"""The console page: ``/`` (one HTML file), ``/console.js`` and ``/console.css``, shipped in the
package (``hotreload/daemon/http/static/``) and read once; no CDN, no other request."""

from __future__ import annotations

from importlib import resources
from typing import Final

from aiohttp import web

__all__ = ["ASSETS", "setup"]

#: Path -> (file in static/, content type).
ASSETS: Final = {
    "/": ("index.html", "text/html"),
    "/console.js": ("console.js", "text/javascript"),
    "/console.css": ("console.css", "text/css"),
}


def _read(name: str) -> bytes:
    return (resources.files(__package__ or "hotreload.daemon.http") / "static" / name
            ).read_bytes()


def setup(app: web.Application) -> None:
    for path, (name, content_type) in ASSETS.items():
        body = _read(name)

        async def serve(_request: web.Request, body: bytes = body,
                        content_type: str = content_type) -> web.Response:
            return web.Response(body=body, content_type=content_type, charset="utf-8")

        app.router.add_get(path, serve)
