"""One soak "pod": a child process (multiprocessing spawn) with a subscriber per namespace and a
two-level cache, reading what it serves and reporting it to the checker over a pipe.

Every ``sample_interval`` it records, per namespace, ``(time, epoch, version, checksum)`` of
the settings it serves, the checksum computed here from the served values (protocol §3, with
this module's own code: the checker does not trust the library to describe itself), and one
cache read ``(start, end, key, value)``. Messages to the parent: ``("ready",)``,
``("batch", samples, reads)``, ``("done", stats)``; from the parent: ``"stop"``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

Sample = tuple[int, float, str, str | None, int, str]  # pod, t, ns, epoch, version, checksum
Read = tuple[int, float, float, str, int]  # pod, start, end, key, value


def checksum(settings: Any, key: bytes | None) -> str:
    """The protocol-§3 checksum of a nested document, its leaves' texts canonical JSON."""
    acc = 0
    for name, value in _leaves(settings, ""):
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                          sort_keys=True)
        data = name.encode() + b"\x00" + text.encode()
        digest = (hmac.new(key, data, hashlib.sha256).digest() if key
                  else hashlib.sha256(data).digest())
        acc ^= int.from_bytes(digest, "big")
    return f"{acc:064x}"


def _leaves(node: Any, prefix: str) -> list[tuple[str, Any]]:
    if isinstance(node, dict) and node:
        out: list[tuple[str, Any]] = []
        for k, v in node.items():
            out += _leaves(v, f"{prefix}.{k}" if prefix else k)
        return out
    return [(prefix, node)] if prefix else []


def pod_main(conn: Connection, spec: dict[str, Any]) -> None:
    import logging

    logging.basicConfig(filename=spec["log_file"], level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_pod(conn, spec))


async def _pod(conn: Connection, spec: dict[str, Any]) -> None:
    from hotreload.cache import AsyncTwoLevelCache
    from hotreload.config import build_config
    from hotreload.subscriber import AsyncSubscriber

    index: int = spec["index"]
    key = spec["hmac_key"].encode()
    config = build_config({"redis": {"url": spec["url"]}, "prefix": spec["prefix"],
                           "security": {"hmac_key": spec["hmac_key"]},
                           "subscriber": spec["timings"]})
    rows = Path(spec["rows_dir"])
    rng = random.Random(spec["seed"])
    subs: dict[str, AsyncSubscriber[Any]] = {}
    for ns in spec["namespaces"]:
        sub: AsyncSubscriber[Any] = AsyncSubscriber(config, namespace=ns,
                                                    instance=f"soak-pod-{index}")
        await sub.start(timeout=60)
        subs[ns] = sub
    cache = AsyncTwoLevelCache(subs[spec["cache_namespace"]], name="rows", ttl=600.0)

    def load(name: str) -> Any:
        try:
            return int((rows / name).read_text())
        except (OSError, ValueError):
            return 0

    samples: list[Sample] = []
    reads: list[Read] = []
    conn.send(("ready",))
    last_send = time.monotonic()
    interval: float = spec["sample_interval"]
    keys: list[str] = spec["row_keys"]
    try:
        while not conn.poll():
            now = time.time()
            for ns, sub in subs.items():
                # one consistent state: nothing awaits between these reads
                samples.append((index, now, ns, sub.epoch, sub.version,
                                checksum(sub.as_dict(), key)))
            name = rng.choice(keys)
            began = time.time()
            value = await cache.get(name, load)
            reads.append((index, began, time.time(), name, int(value or 0)))
            if time.monotonic() - last_send > 0.5:
                conn.send(("batch", samples, reads))
                samples, reads, last_send = [], [], time.monotonic()
            await asyncio.sleep(interval)
        conn.send(("batch", samples, reads))
        stats = {ns: sub.status() for ns, sub in subs.items()}
        stats["cache"] = cache.stats()
        conn.send(("done", json.loads(json.dumps(stats, default=str))))
    finally:
        await cache.aclose()
        for sub in subs.values():
            await sub.aclose()
