"""Who may see the console: when it is on at all, its bearer token, and the loopback guard.

* `console_enabled`: ``daemon.console.enabled``, or when unset, whether ``daemon.http`` is a
  loopback address (a console reachable from the network must be asked for).
* `middleware`: every path but ``/healthz``, ``/readyz`` and ``/metrics`` needs the token when
  one is configured: ``Authorization: Bearer <token>``, or HTTP Basic authentication with the
  token as the password (any user name) so that a browser can log in; ``401`` otherwise. On a
  loopback address, a request whose ``Host`` is not a loopback name is refused (``403``): a web
  page cannot reach the console through DNS rebinding.
* `secure_headers`: the console's responses are not cached, framed or sniffed, and may load
  nothing but the console's own assets (Content-Security-Policy).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web
from pydantic import SecretStr

from ...config import DaemonSettings

__all__ = ["OPEN_PATHS", "console_enabled", "is_loopback", "middleware", "secure_headers"]

#: Paths served whatever the console's settings (probes and scrapers).
OPEN_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})

#: The console's Content-Security-Policy: its own script, style and API, nothing else.
CSP: Final = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
              "img-src 'self' data:; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")

_REALM: Final = 'realm="hotreload console"'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    """``localhost``, ``127.0.0.0/8`` or ``::1`` (a name other than localhost is not)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def console_enabled(settings: DaemonSettings) -> bool:
    """Whether the console and its API are served (never without an HTTP server)."""
    if settings.http is None:
        return False
    if settings.console.enabled is not None:
        return settings.console.enabled
    return is_loopback(settings.http.rpartition(":")[0])


def _host_name(header: str) -> str:
    """The name part of a ``Host`` header (``[::1]:9464`` -> ``::1``)."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def _token_of(header: str) -> bytes | None:
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip().encode()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        return decoded.partition(b":")[2]
    return None


def middleware(token: SecretStr | None, *, loopback: bool) -> Callable[..., Awaitable[
        web.StreamResponse]]:
    """The guard of every path but `OPEN_PATHS`."""
    want = token.get_secret_value().encode() if token is not None else None

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        if loopback and not is_loopback(_host_name(request.host)):
            return web.Response(status=403, text="this console answers to loopback names only "
                                                 "(localhost, 127.0.0.1, [::1])\n")
        if want is not None:
            given = _token_of(request.headers.get("Authorization", ""))
            if given is None or not hmac.compare_digest(given, want):
                resp = web.Response(status=401, text="a token is required: "
                                                     "Authorization: Bearer <token>\n")
                resp.headers.add("WWW-Authenticate", f"Bearer {_REALM}")
                resp.headers.add("WWW-Authenticate", f"Basic {_REALM}, charset=\"UTF-8\"")
                return resp
        return await handler(request)

    return guard


async def secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the console's responses get no-cache and the CSP."""
    if request.path in OPEN_PATHS:
        return
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Security-Policy"] = CSP
