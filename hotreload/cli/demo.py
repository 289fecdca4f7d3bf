"""``hotreload demo``: three "pods" follow one namespace while settings change.

Runs on an in-process server by default (the memory transport: nothing to install or start), or
against a real Redis with ``--redis redis://127.0.0.1:6379/0``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable

import click
from pydantic import BaseModel, Field

from ..config import HotReloadConfig
from ..publisher import AsyncPublisher, PublishResult
from ..subscriber import AsyncSubscriber, Invalidation, SettingsChange
from ..transport import MemoryServer, MemoryTransport, Transport, open_transport
from ._base import State, handle_errors


class DemoDB(BaseModel):
    host: str = "db.internal"
    pool_size: int = Field(10, ge=1, le=500)


class DemoSettings(BaseModel):
    """The schema every demo pod validates against."""

    db: DemoDB = DemoDB()
    greeting: str = "hello"
    features: dict[str, bool] = {}


def _transports(config: HotReloadConfig, url: str | None, count: int) -> list[Transport]:
    """One transport per pod: to the given Redis, or to one in-process server."""
    if url is not None:
        return [open_transport(config) for _ in range(count)]
    server = MemoryServer()
    return [MemoryTransport(server, prefix=config.prefix) for _ in range(count)]


async def _demo(url: str | None, pods: int) -> None:
    config = HotReloadConfig.from_url(url or "redis://embedded/0")
    ns = f"demo-{uuid.uuid4().hex[:6]}"
    transports = _transports(config, url, pods + 1)
    pub = AsyncPublisher(config, namespace=ns, source="demo", transport=transports[0])
    subs: list[AsyncSubscriber[DemoSettings]] = []
    try:
        await _narrate(config, url, ns, pods, pub, subs, transports)
    finally:  # also on an error or Ctrl-C: leave nothing behind in a real Redis
        for sub in subs:
            await sub.aclose()
        try:
            await transports[0].purge(ns)
        finally:
            for transport in transports:
                await transport.aclose()


async def _narrate(config: HotReloadConfig, url: str | None, ns: str, pods: int,
                   pub: AsyncPublisher, subs: list[AsyncSubscriber[DemoSettings]],
                   transports: list[Transport]) -> None:
    say = click.echo
    step_started: list[float] = []  # perf_counter (monotonic) when the current publish began

    await pub.publish({"db": {"host": "db.internal", "pool_size": 10}, "greeting": "hello"})
    for i in range(pods):
        sub = AsyncSubscriber(config, namespace=ns, model=DemoSettings,
                              transport=transports[i + 1])
        name = f"pod-{i + 1}"

        def on_change(ch: SettingsChange, name: str = name) -> None:
            what = ", ".join(f"{c.key}={c.new!r}" if c.op == "set" else f"-{c.key}"
                             for c in ch.changes)
            if step_started and not ch.resync:
                ms = (time.perf_counter() - step_started[-1]) * 1e3
                say(f"  {name}: v{ch.version} applied {ms:.2f} ms after the publish began: "
                    f"{what}")
            else:
                say(f"  {name}: v{ch.version} applied: {what}")

        def on_invalidate(inv: Invalidation, name: str = name) -> None:
            say(f"  {name}: invalidation {inv.version}: cache entries dropped: "
                f"{', '.join(inv.keys)}")

        sub.on_change(on_change)
        sub.on_invalidate(on_invalidate)
        subs.append(sub)
        await sub.start(timeout=10)
    where = (f"Redis at {config.redis.display_url()}" if url
             else "an in-process server (no Redis needed)")
    say(f"{pods} pods follow namespace {ns!r} on {where}")
    say(f"  every pod starts at v{subs[0].version}: pool_size={subs[0].settings.db.pool_size}")

    async def step(command: str, coro: Awaitable[PublishResult]) -> None:
        say(f"\n$ hotreload {command.replace('-n NS', f'-n {ns}')}")
        step_started.append(time.perf_counter())  # before the publish: never a negative time
        try:
            result = await coro
            if result.changed:
                await asyncio.gather(*(s.wait_for_version(result.version, 5, applied=False)
                                       for s in subs))
        finally:
            step_started.clear()

    await step("publish -n NS db.pool_size=20 features.search=true",
               pub.publish({"db.pool_size": 20, "features.search": True}))
    await step("publish -n NS db.pool_size=100000   # invalid: the schema says <= 500",
               pub.publish({"db.pool_size": 100000}))
    for i, sub in enumerate(subs):
        say(f"  pod-{i + 1}: rejected, still serving v{sub.version} "
            f"(pool_size={sub.settings.db.pool_size}): {sub.last_error}")
    await step("publish -n NS db.pool_size=50", pub.publish({"db.pool_size": 50}))
    await step("invalidate -n NS user:42", pub.invalidate(["user:42"]))
    say("\nhistory:")
    for env in await pub.history(limit=10):
        say(f"  v{env.version} {env.kind}: " + ", ".join(c.key for c in env.changes))
    say("\ndone: every pod saw every valid change, and none ever served an invalid one."
        + (f" The demo's keys ({ns}) are deleted on exit." if url else ""))


@click.command()
@click.option("--redis", "url", default=None, metavar="URL",
              help="Use this Redis instead of an in-process one.")
@click.option("--pods", default=3, show_default=True, type=click.IntRange(1, 50))
@handle_errors
@click.pass_context
def demo(ctx: click.Context, url: str | None, pods: int) -> None:
    """Watch settings changes reach several subscribers (no server needed)."""
    if not (ctx.find_object(State) and ctx.find_object(State).verbose):  # type: ignore[union-attr]
        logging.getLogger("hotreload").setLevel(logging.CRITICAL)  # the demo narrates itself
    asyncio.run(_demo(url, pods))


COMMANDS: list[click.Command] = [demo]
