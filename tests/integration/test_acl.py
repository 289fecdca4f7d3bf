"""The Redis ACL of docs/security.md, applied to a throwaway Redis server, does what it says.

Pods subscribe, load, keep presence, use their caches and invalidate, but cannot publish
settings (neither through the publish scripts nor with a raw PUBLISH or HSET); publishers and
the daemon can do everything they need.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shlex
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from hotreload.cache import AsyncTwoLevelCache
from hotreload.config import HotReloadConfig, build_config
from hotreload.errors import BackendError
from hotreload.publisher import AsyncPublisher
from hotreload.subscriber import AsyncSubscriber
from hotreload.wire import keys_for
from tests.conftest import await_until
from tests.integration.servers import RedisServer, redis_server

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
USERS = ("hotreload-pod", "hotreload-publisher", "hotreload-daemon")


def acl_commands() -> dict[str, list[str]]:
    """The ``ACL SETUSER`` commands of docs/security.md, by user (the blocks after an
    ``<!-- acl: USER -->`` marker)."""
    text = DOC.read_text()
    found: dict[str, list[str]] = {}
    for user, block in re.findall(r"<!-- acl: (\S+) -->\n```bash\n(.*?)```", text, re.S):
        args = shlex.split(block.replace("\\\n", " "))
        assert args[:3] == ["redis-cli", "ACL", "SETUSER"] and args[3] == user, args[:4]
        found[user] = args[1:]
    return found


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_server() as s:
        admin = s.client()
        for args in acl_commands().values():
            admin.execute_command(*args)
        admin.close()
        yield s


def url(server: RedisServer, user: str) -> str:
    password = user.removeprefix("hotreload-") + "-password"
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


def config(server: RedisServer, user: str, **extra: Any) -> HotReloadConfig:
    return build_config({"redis": {"url": url(server, user)}, "subscriber": {
        "heartbeat_interval": 0.5, "heartbeat_timeout": 1.5, "version_check_interval": 0.5},
        **extra})


@pytest.fixture
async def published(server: RedisServer, namespace: str) -> AsyncIterator[AsyncPublisher]:
    async with AsyncPublisher(config(server, "hotreload-publisher"), namespace=namespace) as pub:
        await pub.publish({"db": {"pool": 5}, "feature": False})
        await pub.invalidate(["warm-up"])  # the invalidation head exists
        yield pub


def test_the_doc_has_the_three_users() -> None:
    assert sorted(acl_commands()) == sorted(USERS)


async def test_a_pod_follows_caches_and_invalidates_but_cannot_publish(
        server: RedisServer, namespace: str, published: AsyncPublisher,
        caplog: pytest.LogCaptureFixture) -> None:
    pod = config(server, "hotreload-pod")
    caplog.set_level(logging.DEBUG, "hotreload")
    async with AsyncSubscriber(pod, namespace=namespace) as sub, \
            AsyncPublisher(pod, namespace=namespace) as pod_pub:
        assert sub.as_dict() == {"db": {"pool": 5}, "feature": False}
        rows = {"user:1": "alice"}

        async def load(key: str) -> Any:
            return rows.get(key)

        cache = AsyncTwoLevelCache(sub, name="users", publisher=pod_pub)
        try:
            await await_until(lambda: cache.trusted, what="the cache trusted")
            assert await cache.get("user:1", load) == "alice"
            await cache.set("user:2", "bob")
            await cache.invalidate("user:1")
            await cache.invalidate_prefix("user:")
            await cache.clear()
            result = await pod_pub.invalidate(["user:3"], ["orders:"])
            assert result.changed and result.version >= 2
            # the settings keep flowing to the pod (the backstop and presence work too)
            done = await published.publish({"db.pool": 20})
            await sub.wait_for_version(done.version, 10)
            await await_until(lambda: sub.stats.invalidations >= 1, what="an invalidation")
            seen: list[str] = []

            async def present() -> bool:
                records = await published.transport.read_presence(namespace)
                seen[:] = [json.loads(p)["instance"] for p in records]
                return seen == [sub.instance]

            for _ in range(200):
                if await present():
                    break
                await asyncio.sleep(0.02)
            assert seen == [sub.instance]  # the pod wrote its presence record

            for attempt in (pod_pub.publish({"feature": True}),
                            pod_pub.replace({"feature": True})):
                with pytest.raises(BackendError, match="NOPERM") as info:
                    await attempt
                assert "docs/security.md" in str(info.value)
            assert (await published.snapshot()).settings == {"db": {"pool": 20},
                                                             "feature": False}
        finally:
            await cache.aclose()
    problems = [r.getMessage() for r in caplog.records
                if "NOPERM" in r.getMessage() or "failed" in r.getMessage()]
    assert problems == []


def test_a_pod_cannot_publish_or_write_settings_by_hand(server: RedisServer, namespace: str,
                                                        published: AsyncPublisher) -> None:
    k = keys_for(namespace)
    client = redis.Redis.from_url(url(server, "hotreload-pod"))
    try:
        assert client.hmget(k.meta, ["version"])[0] is not None  # reading is fine
        for command in (("PUBLISH", k.config_channel, "{}"),
                        ("HSET", k.meta, "version", "99"),
                        ("HSET", k.leaves, "feature", "true"),
                        ("DEL", k.checkpoint),
                        ("XADD", k.log, "*", "e", "{}"),
                        ("SET", "elsewhere", "x")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*command)
        assert client.execute_command("PUBLISH", k.inv_channel, "{}") == 0
        pubsub = client.pubsub()
        pubsub.subscribe(k.config_channel, k.inv_channel)
        assert pubsub.get_message(timeout=2)["type"] == "subscribe"
        pubsub.close()
    finally:
        client.close()


async def test_a_publisher_does_everything(server: RedisServer, namespace: str,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "hotreload")
    cfg = config(server, "hotreload-publisher", publisher={"checkpoint_every": 1})
    async with AsyncPublisher(cfg, namespace=namespace) as pub, \
            AsyncSubscriber(cfg, namespace=namespace) as sub:
        first = await pub.replace({"a": 1, "b": {"c": 2}})
        await pub.publish({"a": 2}, ["b.c"])
        plan = await pub.plan_rollback(first.version)
        await pub.rollback(first.version, expected_version=plan.from_version)
        await pub.invalidate(everything=True)
        assert len(await pub.history()) == 3
        assert await pub.subscribers() == 1
        await sub.wait_for_version(3, 10)
        assert sub.as_dict() == {"a": 1, "b": {"c": 2}}
        # a namespace lost on the server is recovered into a new epoch (protocol §7.3)
        server.client().delete(keys_for(namespace).meta)
        recovered = await pub.replace({"a": 3})
        assert recovered.recovered and recovered.version == 1
        await await_until(lambda: sub.as_dict() == {"a": 3}, what="the recovery followed")
        assert await pub.transport.purge(namespace) > 0
    problems = [r.getMessage() for r in caplog.records if "NOPERM" in r.getMessage()]
    assert problems == []


async def test_the_daemon_runs_with_its_user(server: RedisServer, namespace: str,
                                             tmp_path: Path) -> None:
    from hotreload.daemon.status import read_daemon_status

    settings = tmp_path / "settings.yaml"
    settings.write_text("feature: true\ndb: {pool: 7}\n")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "redis": {"url": url(server, "hotreload-daemon")}, "daemon": {"http": None},
        "sources": {"files": [{"path": str(settings), "namespace": namespace}]}}))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hotreload", "-c", str(path), "daemon",
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL)
    try:
        pod = config(server, "hotreload-pod")
        async with AsyncSubscriber(pod, namespace=namespace) as sub:
            await await_until(lambda: sub.as_dict() == {"feature": True, "db": {"pool": 7}},
                              timeout=20, what="the daemon's publish")
            settings.write_text("feature: false\n")
            await await_until(lambda: sub.as_dict() == {"feature": False}, timeout=20,
                              what="the edit")
        statuses = await read_daemon_status(config(server, "hotreload-publisher"))
        assert len(statuses) == 1
    finally:
        proc.terminate()
        _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert b"NOPERM" not in err, err.decode()
