"""What the config asks the daemon to run: its sources and its leader lock.

Each is imported lazily, so a daemon without PostgreSQL never imports psycopg.
"""

from __future__ import annotations

from typing import Protocol

from ..config import HotReloadConfig
from .sources.base import Source


class LeaderLike(Protocol):
    """The leader lock (`hotreload.daemon.leader.LeaderLock`); a fake of it serves tests."""

    @property
    def is_leader(self) -> bool: ...

    async def acquire(self) -> None: ...

    async def wait_lost(self) -> str | None:
        """Return (why, if known) once the lock is lost."""

    async def release(self) -> None: ...


def build_sources(config: HotReloadConfig) -> list[Source]:
    """The sources the config asks for (imported lazily: each is optional)."""
    sources: list[Source] = []
    if config.sources.files:
        from .sources.files import FileSource  # type: ignore[import-not-found,import-untyped,unused-ignore]

        sources.append(FileSource(config.sources.files, step_ms=config.daemon.watch_step_ms,
                                  debounce_ms=config.daemon.watch_debounce_ms,
                                  config_dir=config.config_dir))
    if config.postgres is not None:
        from .sources.postgres import PostgresSource  # type: ignore[import-not-found,import-untyped,unused-ignore]

        sources.append(PostgresSource(config.postgres, default_namespace=config.namespace,
                                      max_row_bytes=config.security.max_message_bytes // 2))
    return sources


def build_leader(config: HotReloadConfig) -> LeaderLike | None:
    """The PostgreSQL advisory lock, or None (every daemon leads) without PostgreSQL."""
    if config.postgres is None:
        return None
    from .leader import LeaderLock  # type: ignore[import-not-found,import-untyped,unused-ignore]

    lock: LeaderLike = LeaderLock(config.postgres)
    return lock
