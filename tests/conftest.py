"""Shared fixtures. Service URLs come from REDIS_URL and DATABASE_URL (loopback defaults)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable

import pytest

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses."""
    return unique()


def delete_keys(pattern: str) -> None:
    """Delete every key of the shared Redis matching ``pattern`` (a test's own keys only)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        names = list(client.scan_iter(match=pattern, count=1000))
        if names:
            client.unlink(*names)
    finally:
        client.close()


def wait_until(cond: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``cond`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


async def await_until(cond: Callable[[], object], timeout: float = 10.0,
                      what: str = "condition") -> None:
    """Async `wait_until`."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)
