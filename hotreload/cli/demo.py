"""``hotreload demo``: three "pods" follow one namespace while settings change.

Runs on an embedded fakeredis server by default (nothing to install or start), or against a real
Redis with ``--redis redis://127.0.0.1:6379/0``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import click
from pydantic import BaseModel, Field

from ..config import HotReloadConfig
from ..events import Invalidation, SettingsChange
from ..publisher import AsyncPublisher
from ..subscriber import AsyncSubscriber
from ._base import State, handle_errors


class DemoDB(BaseModel):
    host: str = "db.internal"
    pool_size: int = Field(10, ge=1, le=500)


class DemoSettings(BaseModel):
    """The schema every demo pod validates against."""

    db: DemoDB = DemoDB()
    greeting: str = "hello"
    features: dict[str, bool] = {}


def _clients(url: str | None, count: int) -> list[Any]:
    if url is not None:
        return [None] * count
    try:
        import fakeredis
    except ImportError:
        raise click.ClickException(
            "the embedded demo needs fakeredis: pip install 'hotreload[demo]' "
            "(or run against a real server with --redis redis://127.0.0.1:6379/0)"
        ) from None
    server = fakeredis.FakeServer()
    return [fakeredis.FakeAsyncRedis(server=server) for _ in range(count)]


async def _demo(url: str | None, pods: int) -> None:
    config = HotReloadConfig.from_url(url or "redis://embedded-fakeredis/0")
    ns = f"demo-{uuid.uuid4().hex[:6]}"
    clients = _clients(url, pods + 1)
    published_at: dict[int, float] = {}
    say = click.echo

    pub = AsyncPublisher(config, namespace=ns, source="demo", client=clients[0])
    await pub.publish({"db": {"host": "db.internal", "pool_size": 10}, "greeting": "hello"})
    subs: list[AsyncSubscriber[DemoSettings]] = []
    for i in range(pods):
        sub = AsyncSubscriber(config, namespace=ns, model=DemoSettings, client=clients[i + 1])
        name = f"pod-{i + 1}"

        def on_change(ch: SettingsChange, name: str = name) -> None:
            ms = (time.perf_counter() - published_at.get(ch.version, time.perf_counter())) * 1e3
            what = ", ".join(f"{c.key}={c.new!r}" if c.op == "set" else f"-{c.key}"
                             for c in ch.changes)
            say(f"  {name}: v{ch.version} applied in {ms:.2f} ms: {what}")

        def on_invalidate(inv: Invalidation, name: str = name) -> None:
            say(f"  {name}: v{inv.version} cache entries dropped: {', '.join(inv.keys)}")

        sub.on_change(on_change)
        sub.on_invalidate(on_invalidate)
        await sub.start(timeout=10)
        subs.append(sub)
    say(f"{pods} pods follow namespace {ns!r} on "
        f"{'Redis at ' + config.redis.display_url() if url else 'an embedded fakeredis'}")
    say(f"  every pod starts at v{subs[0].version}: pool_size={subs[0].settings.db.pool_size}")

    async def step(title: str, coro: Any) -> None:
        say(f"\n$ {title}")
        start = time.perf_counter()
        result = await coro
        if result.changed:
            published_at[result.version] = start
            await asyncio.gather(*(s.wait_for_version(result.version, 5, applied=False)
                                   for s in subs))

    await step("hotreload publish db.pool_size=20 features.search=true",
               pub.publish({"db.pool_size": 20, "features.search": True}))
    await step("hotreload publish db.pool_size=100000   # invalid: the schema says <= 500",
               pub.publish({"db.pool_size": 100000}))
    for i, sub in enumerate(subs):
        say(f"  pod-{i + 1}: rejected, still serving v{sub.version} "
            f"(pool_size={sub.settings.db.pool_size}): {sub.last_error}")
    await step("hotreload publish db.pool_size=50", pub.publish({"db.pool_size": 50}))
    await step("hotreload invalidate user:42", pub.invalidate(["user:42"]))
    say("\nhistory:")
    for env in await pub.history(limit=10):
        say(f"  v{env.version} {env.kind}: " + (", ".join(c.key for c in env.changes)
                                               or ", ".join(env.keys)))
    for sub in subs:
        await sub.aclose()
    await pub.aclose()
    say("\ndone: every pod saw every valid change, and none ever served an invalid one.")


@click.command()
@click.option("--redis", "url", default=None, metavar="URL",
              help="Use this Redis instead of an embedded fakeredis.")
@click.option("--pods", default=3, show_default=True, type=click.IntRange(1, 50))
@handle_errors
@click.pass_context
def demo(ctx: click.Context, url: str | None, pods: int) -> None:
    """Watch settings changes reach several subscribers (no server needed)."""
    if not (ctx.find_object(State) and ctx.find_object(State).verbose):  # type: ignore[union-attr]
        logging.getLogger("hotreload").setLevel(logging.CRITICAL)  # the demo narrates itself
    asyncio.run(_demo(url, pods))


COMMANDS: list[click.Command] = [demo]
