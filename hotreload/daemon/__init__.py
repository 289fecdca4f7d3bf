"""The publisher daemon: sources, reconciler, leader election, health and metrics.

Needs the ``daemon`` extra (``pip install 'hotreload[daemon]'``). Only `hotreload.cli` imports
this package; applications import `hotreload` (publisher, subscriber, cache). `Daemon` is
imported on first use, so `hotreload.daemon.status` (what ``hotreload status`` reads) works
without the extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core import Daemon

__all__ = ["Daemon"]


def __getattr__(name: str) -> Any:
    if name == "Daemon":
        from .core import Daemon

        return Daemon
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
