"""Gap detection, replay, reload and last-known-good, on the memory transport (no services).

Everything reaches the subscriber through its transport, as it would from Redis: a publisher
on the same `MemoryServer` publishes, the server's controls cut links and lose data, and a
`TapTransport` (a `MemoryTransport` whose subscriptions pass through a tap, like a proxy in
front of Redis) loses, holds back or re-delivers channel messages, which is how a subscriber
meets gaps, duplicates, stale and forged events on a live link.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel

from hotreload import AsyncPublisher, AsyncSubscriber, FrozenSettings, Invalidation
from hotreload.config import HotReloadConfig, build_config
from hotreload.transport import MemoryServer, MemoryTransport, Message
from hotreload.transport.memory import MemorySubscription
from hotreload.wire import Digester, Envelope, LeafChange, encode_event
from tests.conftest import await_until

NS = "ns"
#: Fast timings; the backstop only where a test wants it (it could otherwise fill a gap
#: before the event that reveals it arrives).
FAST = {"heartbeat_interval": 0.2, "heartbeat_timeout": 0.6, "reconnect_backoff_max": 0.1,
        "command_timeout": 1.0}


def config(backstop: float = 600.0) -> HotReloadConfig:
    return build_config({"redis": {"url": "redis://memory/0"}, "namespace": NS,
                         "subscriber": {**FAST, "version_check_interval": backstop}})


class Strict(BaseModel):
    n: int = 0


class Strict2(BaseModel):
    port: int


class Hook:
    def __init__(self) -> None:
        self.events: list[Invalidation] = []

    def invalidate(self, event: Invalidation) -> None:
        self.events.append(event)

    def set_trusted(self, trusted: bool) -> None:
        pass


class TapSubscription:
    """A subscription whose channel messages can be lost, held back, or delivered again."""

    def __init__(self, inner: MemorySubscription) -> None:
        self.inner = inner
        self.losing = False
        self.holding = False
        self.seen: list[Message] = []  # every channel message that reached the tap
        self._held: list[Message] = []
        self._out: deque[Message] = deque()

    def hold(self) -> None:
        self.holding = True

    def release(self) -> None:
        """Deliver what was held, in order."""
        self.holding = False
        self._out.extend(self._held)
        self._held.clear()

    async def passed(self, count: int) -> None:
        """Wait until ``count`` channel messages reached the tap (published messages are lost
        or held when they reach it, not when they are published)."""
        await await_until(lambda: len(self.seen) >= count, timeout=5,
                          what=f"{count} messages at the tap")

    def inject(self, *messages: Message) -> None:
        """Deliver ``messages`` as if they came from the server."""
        self._out.extend(messages)

    @property
    def connected(self) -> bool:
        return self.inner.connected

    async def next(self, timeout: float) -> Message | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._out and not self.holding:
                return self._out.popleft()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            msg = await self.inner.next(min(remaining, 0.01))
            if msg is None:
                continue
            if msg.kind in ("config", "invalidate"):
                self.seen.append(msg)
                if self.losing:
                    continue
                if self.holding:
                    self._held.append(msg)
                    continue
            return msg

    async def ping(self) -> None:
        await self.inner.ping()

    async def drop(self) -> None:
        await self.inner.drop()

    async def aclose(self) -> None:
        await self.inner.aclose()


class TapTransport(MemoryTransport):
    def __init__(self, server: MemoryServer) -> None:
        super().__init__(server)
        self.taps: list[TapSubscription] = []

    def subscription(self, ns: str) -> TapSubscription:  # type: ignore[override]
        tap = TapSubscription(super().subscription(ns))
        self.taps.append(tap)
        return tap


class Pod:
    """A subscriber on a tapped transport."""

    def __init__(self, server: MemoryServer, cfg: HotReloadConfig, **kw: Any) -> None:
        self.transport = TapTransport(server)
        self.sub: AsyncSubscriber[Any] = AsyncSubscriber(cfg, transport=self.transport, **kw)

    @property
    def tap(self) -> TapSubscription:
        return self.transport.taps[-1]


@pytest.fixture
def server() -> MemoryServer:
    return MemoryServer()


@pytest.fixture
async def pub(server: MemoryServer) -> AsyncIterator[AsyncPublisher]:
    async with AsyncPublisher(config(), transport=MemoryTransport(server)) as publisher:
        yield publisher


@pytest.fixture
async def pods(server: MemoryServer) -> AsyncIterator[Any]:
    made: list[Pod] = []

    async def make(cfg: HotReloadConfig | None = None, *, start: bool = True,
                   **kw: Any) -> Pod:
        pod = Pod(server, cfg or config(), **kw)
        made.append(pod)
        if start:
            await pod.sub.start(timeout=5)
        return pod

    yield make
    server.thaw()
    for pod in made:
        await pod.sub.aclose()


async def log_entries(pub: AsyncPublisher, first: int, last: int) -> list[Message]:
    """The config events ``first..last`` as the channel carried them (from the change log)."""
    return [Message("config", data)
            for data in await pub.transport.read_log(NS, first, last)]


async def test_a_gap_is_filled_from_the_log_in_order(pub: AsyncPublisher, pods: Any) -> None:
    await pub.publish({"n": 1})
    pod = await pods()
    seen: list[int] = []
    pod.sub.on_change(lambda ch: seen.append(ch.version))
    pod.tap.losing = True  # v2..v4 never arrive
    for i in range(2, 5):
        await pub.publish({"n": i})
    await pod.tap.passed(3)
    pod.tap.losing = False
    await pub.publish({"n": 5})  # arrives, four versions ahead of v1
    await pod.sub.wait_for_version(5, 5)
    assert seen == [2, 3, 4, 5]
    assert pod.sub.stats.replays == 1 and pod.sub.get("n") == 5
    assert pod.sub.stats.reloads == 1  # the start-up load only


async def test_old_and_duplicate_events_are_ignored(pub: AsyncPublisher, pods: Any) -> None:
    await pub.publish({"n": 1})
    await pub.publish({"n": 2})
    pod = await pods()
    hook = Hook()
    pod.sub.register_cache(hook)
    pod.tap.inject(*await log_entries(pub, 1, 2))  # v1 (old) and v2 (a duplicate)
    last = await pub.publish({"n": 3})  # delivered after them: once v3 is in, they were seen
    await pod.sub.wait_for_version(last.version, 5)
    assert pod.sub.get("n") == 3 and pod.sub.stats.events == 1
    assert pod.sub.stats.reloads == 1 and pod.sub.stats.replays == 0
    assert pod.sub.stats.rejected_messages == 0 and hook.events == []


async def test_a_gap_older_than_the_log_reloads_and_clears_caches(
    server: MemoryServer, pub: AsyncPublisher, pods: Any
) -> None:
    await pub.publish({"n": 1, "old": True})
    pod = await pods()
    hook = Hook()
    pod.sub.register_cache(hook)
    pod.tap.losing = True
    await pub.publish({"n": 2}, ["old"])
    await pub.publish({"n": 3})
    await pod.tap.passed(2)
    server.delete(pub.keys().log)  # the log lost what the pod missed (trimmed)
    pod.tap.losing = False
    await pub.publish({"n": 4})
    await pod.sub.wait_for_version(4, 5)
    assert pod.sub.as_dict() == {"n": 4} and pod.sub.stats.reloads == 2
    assert hook.events[-1].all and hook.events[-1].reason == "resync"


async def test_invalid_settings_keep_last_good_and_recover(pub: AsyncPublisher,
                                                           pods: Any) -> None:
    await pub.publish({"n": 1})
    pod = await pods(model=Strict)
    sub = pod.sub
    changes: list[Any] = []
    sub.on_change(changes.append)
    await pub.publish({"n": "x"})
    await sub.wait_for_version(2, 5, applied=False)
    assert sub.settings == Strict(n=1) and sub.version == 1 and sub.received_version == 2
    assert "n: Input should be a valid integer" in (sub.last_error or "")
    await pub.publish({"extra": 1})  # extra keys are fine, but n is still "x"
    await sub.wait_for_version(3, 5, applied=False)
    assert sub.settings == Strict(n=1) and sub.last_error
    await pub.publish({"n": 7})
    await sub.wait_for_version(4, 5)
    assert sub.settings == Strict(n=7) and sub.last_error is None and sub.version == 4
    # the listener sees the net change against what it last saw
    assert [c.key for c in changes[-1].changes] == ["extra", "n"]
    assert len(changes) == 1


async def test_settings_mapping_is_read_only(pub: AsyncPublisher, pods: Any) -> None:
    await pub.publish({"a": {"b": [1, {"c": 2}]}})
    sub = (await pods()).sub
    s = sub.settings
    assert isinstance(s, FrozenSettings) and s == {"a": {"b": [1, {"c": 2}]}}
    assert s["a"]["b"] == (1, FrozenSettings({"c": 2}))
    with pytest.raises(TypeError):
        s["a"] = 1  # type: ignore[index]
    assert sub.get("a.b")[1]["c"] == 2 and sub.get("a")["b"][0] == 1


async def test_a_forged_event_is_healed_when_the_real_one_arrives(pub: AsyncPublisher,
                                                                  pods: Any) -> None:
    first = await pub.publish({"n": 1})
    pod = await pods()
    assert first.epoch is not None
    digester = Digester()
    change = LeafChange("n", "1", "666")

    def forged(checksum: str) -> Message:
        return Message("config", encode_event(Envelope(
            NS, "config", first.epoch or "", version=2, checksum=checksum, changes=(change,),
            source="x", origin="evil")))

    # A forged next version whose checksum does not fit what the pod holds: never applied.
    pod.tap.inject(forged("0" * 64))
    await await_until(lambda: pod.sub.stats.mismatches == 1, what="the mismatch")
    await await_until(lambda: pod.sub.stats.resyncs >= 2, what="the load it causes")
    assert pod.sub.get("n") == 1
    # One that fits (an unsigned channel cannot tell)...
    pod.tap.inject(forged(digester.advance(digester.checksum_of({"n": "1"}), [change])))
    await pod.sub.wait_for_version(2, 5)
    assert pod.sub.get("n") == 666
    # ...until the real v2 arrives: same version, another checksum: the pod loads the truth.
    await pub.publish({"n": 2})
    await await_until(lambda: pod.sub.get("n") == 2, what="the real v2")
    assert pod.sub.received_version == 2 and pod.sub.version == 2


async def test_a_new_history_is_reloaded_not_replayed(server: MemoryServer,
                                                      pub: AsyncPublisher, pods: Any) -> None:
    await pub.publish({"a": 1, "old": True})
    await pub.publish({"a": 2})
    pod = await pods()
    hook = Hook()
    pod.sub.register_cache(hook)
    keys = pub.keys()
    server.delete(keys.meta, keys.leaves, keys.checkpoint, keys.log)  # the namespace is lost
    pod.tap.losing = True
    async with AsyncPublisher(config(), transport=MemoryTransport(server)) as other:
        first = await other.replace({"a": 100, "b": 1})
        for i in range(2, 4):
            await other.publish({"b": i})
        await pod.tap.passed(3)
        pod.tap.losing = False
        await other.publish({"b": 4})  # v4 of the new epoch
    await await_until(lambda: pod.sub.as_dict() == {"a": 100, "b": 4}, what="the new history")
    assert pod.sub.epoch == first.epoch and pod.sub.version == 4
    assert pod.sub.stats.replays == 0 and pod.sub.stats.reloads == 2
    assert hook.events[-1].all  # another history: caches drop everything
    # and the first publisher's stale state cannot overwrite the new history
    result = await pub.publish({"y": 1})
    assert (result.version, result.epoch) == (5, first.epoch)
    assert (await pub.snapshot()).settings == {"a": 100, "b": 4, "y": 1}


async def test_listeners_cannot_mutate_the_live_settings(pub: AsyncPublisher,
                                                         pods: Any) -> None:
    await pub.publish({"hosts": ["a"]})
    sub = (await pods()).sub
    seen: list[Any] = []
    sub.on_change(lambda ch: seen.append(ch.changes[0].new))
    await pub.publish({"hosts": ["a", "b"]})
    await sub.wait_for_version(2, 5)
    await await_until(lambda: seen, what="the listener")
    assert seen == [("a", "b")]  # a tuple: there is nothing to append to
    assert sub.get("hosts") == ("a", "b")
    assert sub.as_dict() == {"hosts": ["a", "b"]}


async def test_ready_when_the_first_valid_settings_come_by_event(pub: AsyncPublisher,
                                                                 pods: Any) -> None:
    pod = await pods(model=Strict2, start=False)
    starting = asyncio.create_task(pod.sub.start(timeout=5))
    await await_until(lambda: pod.sub.stats.reloads >= 1, what="the first (invalid) load")
    assert not starting.done()  # the app started before its settings were published
    await pub.publish({"port": 8080})
    await starting
    assert pod.sub.settings == Strict2(port=8080)
    assert pod.sub.stats.reloads == 1  # v1 came as an event: no second load


async def test_a_namespace_created_after_start_is_followed_without_a_reload(
        pub: AsyncPublisher, pods: Any) -> None:
    """The version check of a subscriber that loaded a never-published namespace sees the
    namespace's new epoch before its first event arrives: that is the history it follows (it
    loads it, protocol §8 step 7), not another one: no "invalidate everything" (nothing was
    missed: the caches keep their entries), v1 reaches the listeners, and the late v1 event is
    a duplicate, not a reason to load again."""
    pod = await pods(config(backstop=0.2))
    hook = Hook()
    pod.sub.register_cache(hook)
    seen: list[int] = []
    pod.sub.on_change(lambda ch: seen.append(ch.version))
    pod.tap.hold()  # v1's message is late: the version check gets there first
    await pub.publish({"n": 1})
    await pod.tap.passed(1)
    await pod.sub.wait_for_version(1, 5)
    pod.tap.release()  # the late v1 arrives
    await pub.publish({"n": 2})
    await pod.sub.wait_for_version(2, 5)
    assert seen == [1, 2] and pod.sub.get("n") == 2
    assert pod.sub.stats.reloads == 2 and pod.sub.stats.events == 1
    assert hook.events == []


@pytest.mark.parametrize("invalidated", [False, True], ids=["no-invalidation-yet", "seq-3"])
async def test_starting_tells_no_cache_to_drop_everything(pub: AsyncPublisher, pods: Any,
                                                          invalidated: bool) -> None:
    """A subscriber reads the invalidation head when it starts: that is where it begins to
    follow invalidations, not a gap (its caches cannot hold anything yet), so its listeners
    hear only real invalidations."""
    await pub.publish({"n": 1})
    for _ in range(3 if invalidated else 0):
        await pub.invalidate(["old"])
    pod = await pods(start=False)
    hook = Hook()
    heard: list[Invalidation] = []
    pod.sub.register_cache(hook)
    pod.sub.on_invalidate(heard.append)
    await pod.sub.start(timeout=5)
    await pod.sub.wait_for_version(1, 5)
    result = await pub.invalidate(["k"])
    await await_until(lambda: heard, what="the invalidation")
    assert [(e.version, e.keys, e.all) for e in heard] == [(result.version, ("k",), False)]
    assert hook.events == heard


class SwallowingTransport(MemoryTransport):
    """Reads of the head that take a while and, like redis-py's asyncio client sometimes does,
    swallow the first cancellation that arrives meanwhile (the call returns as if nothing
    happened, the task is left "cancelling")."""

    swallowed = False

    async def _swallow(self, call: Any) -> Any:
        """``await call()`` after a pause that swallows the first cancellation."""
        try:
            await asyncio.sleep(0.3)
        except asyncio.CancelledError:
            if self.swallowed:
                raise
            self.swallowed = True
        return await call()

    async def head(self, ns: str) -> Any:
        return await self._swallow(lambda: super(SwallowingTransport, self).head(ns))

    async def write_presence(self, ns: str, instance: str, record: bytes, ttl: float) -> Any:
        return await self._swallow(lambda: super(SwallowingTransport, self).write_presence(
            ns, instance, record, ttl))


async def test_close_ends_every_task_even_when_the_driver_swallows_the_cancellation(
        server: MemoryServer, pub: AsyncPublisher) -> None:
    await pub.publish({"n": 1})
    loop = asyncio.get_running_loop()
    for pause in (0.0, 0.1, 0.2):
        transport = SwallowingTransport(server)
        sub: AsyncSubscriber[Any] = AsyncSubscriber(config(backstop=0.05), transport=transport)
        await sub.start(timeout=5)
        await asyncio.sleep(pause)  # the syncer or the backstop is reading the head
        started = loop.time()
        closing = asyncio.create_task(sub.aclose())
        done, _ = await asyncio.wait([closing], timeout=3)
        assert done, "aclose() hangs"
        assert loop.time() - started < 1.5 and transport.swallowed
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("hotreload-")]


async def test_a_cancelled_close_is_cancelled(server: MemoryServer, pub: AsyncPublisher) -> None:
    """aclose() must not swallow its caller's cancellation (a timeout around it, a shutdown)."""
    await pub.publish({"n": 1})
    transport = SwallowingTransport(server)
    transport.swallowed = True  # this one lets cancellations through
    sub: AsyncSubscriber[Any] = AsyncSubscriber(config(backstop=0.05), transport=transport)
    await sub.start(timeout=5)
    await asyncio.sleep(0.1)  # the backstop is in a (slow) presence round trip
    closing = asyncio.create_task(sub.aclose())
    await asyncio.sleep(0)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    await sub.aclose()


async def test_an_invalidation_in_flight_is_not_a_gap_for_the_version_check(
        pub: AsyncPublisher, pods: Any) -> None:
    """The version check reads the invalidation head: one ahead of the subscriber while its
    event is still on the way is not a lost event (as for settings, protocol §8 step 7: look
    again after the in-flight grace). Otherwise every cache of the process stops trusting L1
    and its loads in flight are spoilt, for nothing."""
    await pub.publish({"n": 1})
    pod = await pods(config(backstop=0.05))
    hook = Recorder()
    pod.sub.register_cache(hook)
    await await_until(lambda: hook.trusted[-1:] == [True], what="trusted")
    pod.tap.hold()  # the event is late: several version checks run meanwhile
    first = await pub.invalidate(["k"])
    await pod.tap.passed(1)
    await asyncio.sleep(0.2)
    pod.tap.release()
    await await_until(lambda: hook.events, what="the invalidation")
    await asyncio.sleep(0.6)  # past the grace: the version check agrees with the subscriber
    assert [(e.version, e.keys, e.reason) for e in hook.events] == [(first.version, ("k",),
                                                                      "event")]
    assert False not in hook.trusted
    # an invalidation really lost is still found by the version check (after the grace)
    pod.tap.losing = True
    second = await pub.invalidate(["j"])
    await await_until(lambda: len(hook.events) == 2, what="the lost invalidation replayed")
    assert (hook.events[-1].version, hook.events[-1].keys) == (second.version, ("j",))


class Recorder(Hook):
    def __init__(self) -> None:
        super().__init__()
        self.trusted: list[bool] = []

    def set_trusted(self, trusted: bool) -> None:
        self.trusted.append(trusted)


class SlowReplyTransport(MemoryTransport):
    """The version check's round trip takes a while: the head it returns was read on the
    server before the events the subscriber applies meanwhile."""

    async def write_presence(self, ns: str, instance: str, record: bytes, ttl: float) -> Any:
        head = await super().write_presence(ns, instance, record, ttl)
        await asyncio.sleep(0.05)  # the reply is on its way back
        return head

    async def head(self, ns: str) -> Any:
        head = await super().head(ns)
        await asyncio.sleep(0.05)
        return head


async def test_a_head_read_before_the_events_applied_meanwhile_is_not_the_server_behind(
        server: MemoryServer, pub: AsyncPublisher, caplog: pytest.LogCaptureFixture) -> None:
    """While events flow, the head a version check reads is often older than what the
    subscriber applies before the reply arrives: that is not "the server is behind"."""
    await pub.publish({"n": 0})
    sub: AsyncSubscriber[Any] = AsyncSubscriber(config(backstop=0.02),
                                                transport=SlowReplyTransport(server))
    await sub.start(timeout=5)
    try:
        for i in range(1, 101):
            last = await pub.publish({"n": i})
            await asyncio.sleep(0.005)
        await sub.wait_for_version(last.version, 5)
        assert sub.stats.holds == 0 and sub.server_note is None
        assert not [r for r in caplog.records if r.levelname == "ERROR"]
    finally:
        await sub.aclose()
