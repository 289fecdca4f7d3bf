"""This process's presence record (docs/protocol.md §11; its format: `hotreload.wire.presence`)."""

from __future__ import annotations

import os
import secrets
import socket
import time
from typing import Any

from ..wire.presence import LinkState, PresenceRecord

__all__ = ["instance_id", "own_record"]


def instance_id() -> str:
    """``<host>:<pid>:<random>``: unique per subscriber object."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def own_record(*, instance: str, service: str, version: int, epoch: str | None,
               received_version: int, link: LinkState, canary: str | None,
               rejected: dict[str, Any] | None, started_at: float,
               applied_at: float) -> PresenceRecord:
    """The record this process reports now."""
    return PresenceRecord(instance=instance, service=service, version=version, epoch=epoch,
                          received_version=received_version, link=link, canary=canary,
                          rejected=rejected, started_at=started_at, refreshed_at=time.time(),
                          host=socket.gethostname(), pid=os.getpid(), applied_at=applied_at)
