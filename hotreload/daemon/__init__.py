"""The publisher daemon: sources, reconciler, leader election, health and metrics.

Needs the ``daemon`` extra (``pip install 'hotreload[daemon]'``). Only `hotreload.cli` imports
this package; applications import `hotreload` (publisher, subscriber, cache).
"""

from .core import Daemon

__all__ = ["Daemon"]
