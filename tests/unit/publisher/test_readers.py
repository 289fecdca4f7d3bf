"""A publisher used only to read (``hotreload get``/``status``, a pod's cache) writes nothing:
no checkpoint at close (a pod's Redis user may not write one: docs/security.md)."""

from __future__ import annotations

from hotreload.wire import decode_checkpoint, keys_for
from tests.unit.memory_fixtures import Pods, config

KEYS = keys_for("app")


def checkpoint_version(pods: Pods) -> int:
    ckpt = decode_checkpoint("app", pods.server.raw(KEYS.checkpoint) or {})
    return 0 if ckpt is None else ckpt.version


async def test_a_reading_publisher_writes_no_checkpoint_at_close(pods: Pods) -> None:
    slow = config(publisher={"checkpoint_every": 1000, "checkpoint_interval": 3600})
    writer = pods.publisher(slow)
    for i in range(5):
        await writer.publish({"n": i})
    assert checkpoint_version(pods) == 1
    reader = pods.publisher(slow)
    assert (await reader.snapshot()).version == 5
    await reader.aclose()
    assert checkpoint_version(pods) == 1
    await writer.aclose()
    assert checkpoint_version(pods) == 5
