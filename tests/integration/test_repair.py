"""``hotreload repair`` on real Redis: every corruption of issue 8 item 4, by every route.

A namespace is published and followed by a subscriber, then damaged on the server (a garbage
head, a garbage leaf, a version of 2^64 + 1 or -5, a head or leaves of the wrong type). A
partial publish then refuses (`RecoveryNeeded`); `hotreload repair --yes` rebuilds it into a
new epoch from a file, from the PostgreSQL settings table, or from what is still readable; the
subscriber follows the new epoch, and publishing works again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import psycopg
import pytest
import redis
import yaml
from click.testing import CliRunner

from hotreload import Publisher, RecoveryNeeded, Subscriber
from hotreload.cli import _register, cli
from hotreload.wire import keys_for
from tests.conftest import DATABASE_URL, REDIS_URL, wait_until

pytestmark = pytest.mark.integration

BEFORE = {"db": {"host": "a", "pool": 6}, "feature": True}
FILE_DOC = {"db": {"host": "b", "pool": 7}, "feature": False}
TABLE_DOC = {"db": {"host": "pg", "pool": 9}, "limits": [1, 2]}


def _garbage_head(r: redis.Redis, k: Any) -> None:
    r.hset(k.meta, mapping={"checksum": "garbage", "epoch": "not-an-epoch"})


def _garbage_leaf(r: redis.Redis, k: Any) -> None:
    r.hset(k.leaves, "db.host", "{not json")


def _huge_version(r: redis.Redis, k: Any) -> None:
    r.hset(k.meta, "version", str(2**64 + 1))


def _negative_version(r: redis.Redis, k: Any) -> None:
    r.hset(k.meta, "version", "-5")


def _head_of_wrong_type(r: redis.Redis, k: Any) -> None:
    r.delete(k.meta)
    r.set(k.meta, "oops")


def _leaves_of_wrong_type(r: redis.Redis, k: Any) -> None:
    r.delete(k.leaves)
    r.rpush(k.leaves, "oops")


CORRUPTIONS: dict[str, Callable[[redis.Redis, Any], None]] = {
    "garbage-head": _garbage_head,
    "garbage-leaf": _garbage_leaf,
    "version-2^64+1": _huge_version,
    "version--5": _negative_version,
    "head-wrong-type": _head_of_wrong_type,
    "leaves-wrong-type": _leaves_of_wrong_type,
}

#: What --keep-readable rebuilds: the leaves that still read, else the checkpoint.
READABLE = {
    "garbage-leaf": {"db": {"pool": 6}, "feature": True},
}


@pytest.fixture(scope="module")
def app() -> click.Group:
    _register.register(cli)
    return cli


@pytest.fixture
def table() -> Iterator[str]:
    """A settings table of this test only, in the shared PostgreSQL."""
    from hotreload.daemon import db

    name = f"hr_rep_{uuid.uuid4().hex[:10]}"
    import asyncio

    asyncio.run(db.install(DATABASE_URL, db.SqlNames(name, name)))
    yield name
    asyncio.run(db.uninstall(DATABASE_URL, db.SqlNames(name, name)))


def _config(tmp_path: Path, table: str | None = None) -> Path:
    data: dict[str, Any] = {
        "redis": {"url": REDIS_URL},
        "publisher": {"checkpoint_every": 1},
        "subscriber": {"heartbeat_interval": 0.5, "heartbeat_timeout": 1.5,
                       "version_check_interval": 0.5},
    }
    if table is not None:
        data["postgres"] = {"dsn": DATABASE_URL, "settings_table": table,
                            "notify_channel": table}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _insert_rows(table: str, namespace: str, rows: dict[str, str]) -> None:
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        for key, value in rows.items():
            conn.execute(f'INSERT INTO "{table}" (namespace, key, value) VALUES (%s, %s, %s)',
                         (namespace, key, value))


@pytest.mark.parametrize("route", ["file", "postgres", "keep-readable"])
@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_repair(app: click.Group, tmp_path: Path, namespace: str, request: Any, kind: str,
                route: str) -> None:
    table = request.getfixturevalue("table") if route == "postgres" else None
    path = _config(tmp_path, table)
    from hotreload.config import load_config

    config = load_config(path)
    with Publisher(config, namespace=namespace) as pub:
        pub.publish({"db": {"host": "a", "pool": 5}, "feature": True})
        pub.publish({"db.pool": 6})
    with Subscriber(config, namespace=namespace) as sub:
        assert sub.as_dict() == BEFORE
        epoch = sub.epoch
        raw = redis.Redis.from_url(REDIS_URL)
        CORRUPTIONS[kind](raw, keys_for(namespace))
        raw.close()
        with Publisher(config, namespace=namespace) as fresh, \
                pytest.raises(RecoveryNeeded, match="hotreload repair"):
            fresh.publish({"feature": False})

        args = ["-c", str(path), "repair", "-n", namespace, "--yes"]
        if route == "file":
            doc = tmp_path / "settings.yaml"
            doc.write_text(yaml.safe_dump(FILE_DOC))
            args += ["--file", str(doc)]
            want = FILE_DOC
        elif route == "postgres":
            assert table is not None
            _insert_rows(table, namespace, {"db": '{"host": "pg", "pool": 9}',
                                            "limits": "[1, 2]"})
            args += ["--from-postgres"]
            want = TABLE_DOC
        else:
            args += ["--keep-readable"]
            want = READABLE.get(kind, BEFORE)
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        out = result.output
        assert f"repair of {namespace}" in out and "will publish" in out
        assert f"repaired {namespace}: v1 of epoch" in out
        if kind == "garbage-leaf" and route == "keep-readable":
            assert "unreadable, dropped: db.host:" in out
        if kind == "head-wrong-type":
            assert "head: a string, not a hash" in out
        if kind == "leaves-wrong-type":
            assert "leaves: a list, not a hash" in out

        wait_until(lambda: sub.as_dict() == want and sub.epoch != epoch, timeout=15,
                   what=f"the subscriber following the repair to {want}")
        assert sub.version == 1
        with Publisher(config, namespace=namespace) as again:
            done = again.publish({"after": "repair"})
        sub.wait_for_version(done.version, 10)
        assert sub.get("after") == "repair"


def test_repair_asks_and_takes_one_route(app: click.Group, tmp_path: Path,
                                         namespace: str) -> None:
    path = _config(tmp_path)
    both = CliRunner().invoke(app, ["-c", str(path), "repair", "-n", namespace,
                                    "--keep-readable", "--from-postgres"])
    assert both.exit_code == 2
    assert "exactly one of" in both.output
    with Publisher(_load(path), namespace=namespace) as pub:
        pub.publish({"a": 1})
    asked = CliRunner().invoke(app, ["-c", str(path), "repair", "-n", namespace,
                                     "--keep-readable"])
    assert asked.exit_code == 2 and "no terminal to confirm on; pass --yes" in asked.output
    assert "the namespace is healthy" in asked.output
    with Publisher(_load(path), namespace=namespace) as pub:
        assert pub.snapshot().version == 1 and pub.snapshot().settings == {"a": 1}
    nothing = CliRunner().invoke(app, ["-c", str(path), "repair", "-n", namespace + "-none",
                                       "--keep-readable", "--yes"])
    assert nothing.exit_code == 1 and "nothing readable" in nothing.output


def _load(path: Path) -> Any:
    from hotreload.config import load_config

    return load_config(path)
