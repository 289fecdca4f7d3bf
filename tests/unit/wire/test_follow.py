"""follow.py: the subscriber's decisions (protocol §8 steps 5-7, §9).

Rule by rule, then a model: a server history over several epochs (with rollbacks and data
loss that a publisher recovers with a new epoch), delivered with drops, duplicates, stale
events and backstop checks; the subscriber acts on every decision with a store that answers
replays and loads from the history, and must end on the server's state without ever going
backwards or applying a version twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotreload.errors import ProtocolError
from hotreload.wire import (
    EMPTY_CHECKSUM,
    Decision,
    Digester,
    Envelope,
    LeafSet,
    Position,
    Verdict,
    compare_epochs,
    decode_event,
    diff_texts,
    encode_event,
    on_event,
    on_head,
    on_invalidation,
    on_load,
)
from hotreload.wire.follow import UNLOADED

from .strategies import SETTINGS, leaf_texts, small_keys

E0 = "1000-0000000000000000"
E1 = "2000-0000000000000001"
E1B = "2000-0000000000000002"
E2 = "3000-0000000000000000"
C = "c" * 64
D = "d" * 64
APPLY, IGNORE, REPLAY, LOAD, REJECT = (Verdict.APPLY, Verdict.IGNORE, Verdict.REPLAY,
                                       Verdict.LOAD, Verdict.REJECT)
HOLD, RECHECK, ADOPT, NOTHING = Verdict.HOLD, Verdict.RECHECK, Verdict.ADOPT, Verdict.NOTHING
ABSENT = Position(None, 0)


def ev(pos: Position, epoch: str, version: int, checksum: str = D, reset: bool = False,
       limit: int = 1000) -> Decision:
    return on_event(pos, epoch=epoch, version=version, checksum=checksum, reset=reset,
                    replay_limit=limit)


# ------------------------------------------------------------------ §8 steps 5-6


def test_events_of_the_current_epoch() -> None:
    pos = Position(E1, 5, C)
    assert ev(pos, E1, 6).verdict is APPLY
    assert ev(pos, E1, 4).verdict is IGNORE
    assert ev(pos, E1, 5, C) == Decision(IGNORE, "duplicate")
    assert ev(pos, E1, 5, D) == Decision(LOAD, "checksum")
    assert ev(pos, E1, 6, reset=True) == Decision(LOAD, "reset")
    assert ev(pos, E1, 1, C, reset=True).verdict is IGNORE


def test_gaps_replay_up_to_the_limit_then_load() -> None:
    pos = Position(E1, 5, C)
    assert ev(pos, E1, 9, limit=4) == Decision(REPLAY, "gap", 6, 9)
    assert ev(pos, E1, 10, limit=4) == Decision(LOAD, "gap")
    # never in proportion to the number received
    assert ev(pos, E1, 2**53 - 1) == Decision(LOAD, "gap")


def test_epochs() -> None:
    pos = Position(E1, 5, C)
    assert ev(pos, E0, 99) == Decision(REJECT, "older-epoch")
    assert ev(pos, E2, 1) == Decision(LOAD, "epoch")
    assert ev(pos, E2, 1, reset=True) == Decision(LOAD, "epoch")
    assert ev(pos, E1B, 1) == Decision(LOAD, "epoch")  # same time, another history


def test_a_never_published_namespace() -> None:
    assert ev(ABSENT, E1, 1).verdict is APPLY
    assert ev(ABSENT, E1, 1, reset=True) == Decision(LOAD, "reset")
    assert ev(ABSENT, E1, 2) == Decision(LOAD, "epoch")


def test_before_the_first_load_and_after_a_protocol_1_snapshot() -> None:
    assert ev(UNLOADED, E1, 1) == Decision(LOAD, "unloaded")
    assert ev(Position(None, 41), E1, 1) == Decision(LOAD, "epoch")


# ------------------------------------------------------------------ §8 step 7


def head(pos: Position, epoch: str | None, version: int, checksum: str = C,
         recheck: bool = False, limit: int = 1000) -> Decision:
    return on_head(pos, epoch, version, checksum, recheck=recheck, replay_limit=limit)


def test_backstop() -> None:
    pos = Position(E1, 5, C)
    assert head(pos, E1, 5).verdict is NOTHING
    assert head(pos, E1, 5, D) == Decision(LOAD, "checksum")
    assert head(pos, E1, 7) == Decision(RECHECK, "ahead")
    assert head(pos, E1, 7, recheck=True) == Decision(REPLAY, "ahead", 6, 7)
    assert head(pos, E1, 7, recheck=True, limit=1) == Decision(LOAD, "gap")
    assert head(pos, E1, 4) == Decision(HOLD, "behind")
    assert head(pos, E0, 40) == Decision(HOLD, "older-epoch")
    assert head(pos, E2, 1) == Decision(LOAD, "epoch")
    assert head(pos, None, 0) == Decision(HOLD, "no-head")


def test_backstop_of_absent_and_unloaded_namespaces() -> None:
    assert head(ABSENT, None, 0).verdict is NOTHING
    assert head(ABSENT, E1, 1) == Decision(RECHECK, "created")
    assert head(ABSENT, E1, 1, recheck=True) == Decision(LOAD, "created")
    assert head(UNLOADED, E1, 1) == Decision(LOAD, "unloaded")
    assert head(Position(None, 41), E1, 1) == Decision(LOAD, "epoch")
    assert head(Position(None, 41), None, 0).verdict is NOTHING


# ------------------------------------------------------------------ §8 step 2


def test_loads_never_go_backwards() -> None:
    pos = Position(E1, 5, C)
    assert on_load(UNLOADED, None, 0) == Decision(ADOPT, "first")
    assert on_load(pos, E1, 5).verdict is ADOPT
    assert on_load(pos, E1, 9).verdict is ADOPT
    assert on_load(pos, E1, 4) == Decision(HOLD, "behind")
    assert on_load(pos, E0, 90) == Decision(HOLD, "older-epoch")
    assert on_load(pos, E2, 1).verdict is ADOPT
    assert on_load(pos, E1B, 1).verdict is ADOPT
    assert on_load(pos, None, 0) == Decision(HOLD, "no-head")
    assert on_load(pos, None, 41) == Decision(HOLD, "legacy")
    assert on_load(ABSENT, None, 0).verdict is ADOPT
    assert on_load(ABSENT, E1, 3).verdict is ADOPT
    assert on_load(Position(None, 41), None, 42).verdict is ADOPT
    assert on_load(Position(None, 41), None, 40) == Decision(HOLD, "legacy")
    assert on_load(Position(None, 41), E1, 1) == Decision(ADOPT, "migrated")


# ------------------------------------------------------------------ §9


def test_invalidations() -> None:
    i = (E1, 7)
    assert on_invalidation(i, E1, 8).verdict is APPLY
    assert on_invalidation(i, E1, 7).verdict is IGNORE
    assert on_invalidation(i, E1, 3).verdict is IGNORE
    assert on_invalidation(i, E1, 10) == Decision(REPLAY, "gap", 8, 10)
    assert on_invalidation(i, E1, 10, replay_limit=2) == Decision(ADOPT, "gap")
    assert on_invalidation(i, E2, 1) == Decision(ADOPT, "epoch")
    assert on_invalidation(i, E0, 1) == Decision(ADOPT, "epoch")  # any other epoch
    assert on_invalidation((None, 0), E1, 1).verdict is APPLY
    # the head was read and absent: a history begun since is replayed from its start
    assert on_invalidation((None, 0), E1, 2) == Decision(REPLAY, "gap", 1, 2)
    assert on_invalidation((None, 0), E1, 9, replay_limit=8) == Decision(ADOPT, "epoch")
    assert on_invalidation((None, -1), E1, 1) == Decision(ADOPT, "epoch")


def test_invalidation_heads() -> None:
    i = (E1, 7)
    assert on_invalidation(i, E1, 7, head=True).verdict is NOTHING
    assert on_invalidation(i, E1, 8, head=True) == Decision(REPLAY, "gap", 8, 8)
    assert on_invalidation(i, E1, 5, head=True) == Decision(ADOPT, "behind")
    assert on_invalidation(i, None, 0, head=True) == Decision(ADOPT, "no-head")
    assert on_invalidation((None, 0), None, 0, head=True).verdict is NOTHING
    assert on_invalidation((None, -1), None, 0, head=True) == Decision(ADOPT, "no-head")
    assert on_invalidation((None, 0), E1, 1, head=True) == Decision(REPLAY, "gap", 1, 1)
    assert on_invalidation((None, 0), E1, 3, head=True) == Decision(REPLAY, "gap", 1, 3)
    assert on_invalidation((None, 0), E1, 3, head=True, replay_limit=2) == Decision(
        ADOPT, "epoch")


# ------------------------------------------------------------------ the model


@dataclass
class Server:
    """The namespace on the server, and the publisher that owns it."""

    digester: Digester
    log_keep: int
    epoch: str | None = None
    version: int = 0
    leaves: dict[str, str] = field(default_factory=dict)
    log: dict[int, bytes] = field(default_factory=dict)
    ms: int = 1000
    # what the publisher last saw: it recovers (new epoch) when the server differs
    seen: tuple[str | None, int, dict[str, str]] = (None, 0, {})
    published: list[bytes] = field(default_factory=list)

    @property
    def checksum(self) -> str:
        return self.digester.checksum_of(self.leaves)

    def _event(self, changes: Any, reset: bool = False) -> bytes:
        assert self.epoch is not None
        data = encode_event(Envelope("app", "config", self.epoch, version=self.version,
                                     checksum=self.checksum, changes=changes, reset=reset))
        self.log[self.version] = data
        for old in [v for v in self.log if v <= self.version - self.log_keep]:
            del self.log[old]
        self.published.append(data)
        self.seen = (self.epoch, self.version, dict(self.leaves))
        return data

    def publish(self, sets: dict[str, str | None]) -> bytes | None:
        seen_epoch, seen_version, seen_leaves = self.seen
        base = seen_leaves if (self.epoch, self.version) != (seen_epoch, seen_version) else \
            self.leaves
        new = dict(base)
        for k, text in sets.items():
            if text is None:
                new.pop(k, None)
            else:
                new[k] = text
        if (self.epoch, self.version) != (seen_epoch, seen_version) or self.epoch is None:
            return self.new_epoch(new, reset=len(new) > 3)  # §7.3: create or recover
        changes = diff_texts(self.leaves, new)
        if not changes:
            return None
        self.leaves = new
        self.version += 1
        return self._event(changes)

    def new_epoch(self, leaves: dict[str, str], reset: bool) -> bytes:
        self.ms += 1000
        self.epoch = f"{self.ms}-{self.ms:016x}"
        self.version = 1
        self.log = {}
        changes = () if reset else diff_texts({}, leaves)
        self.leaves = dict(leaves)
        return self._event(changes, reset=reset)

    def rollback(self, back: int) -> None:
        """A restored backup: an older version of this epoch (its log keeps older entries)."""
        if self.epoch is None or self.version <= 1:
            return
        target = max(1, self.version - back)
        while self.version > target:
            env = decode_event(self.log[self.version]) if self.version in self.log else None
            if env is None:
                break
            for ch in env.changes:
                if ch.old is None:
                    self.leaves.pop(ch.key, None)
                else:
                    self.leaves[ch.key] = ch.old
            del self.log[self.version]
            self.version -= 1

    def lose(self) -> None:
        self.epoch, self.version, self.leaves, self.log = None, 0, {}, {}

    def head(self) -> tuple[str | None, int, str]:
        return self.epoch, self.version, self.checksum


@dataclass
class Subscriber:
    server: Server
    replay_limit: int
    digester: Digester
    epoch: str | None = None
    version: int = -1
    checksum: str = EMPTY_CHECKSUM
    leaves: LeafSet = field(default_factory=LeafSet)
    applied: set[tuple[str, int]] = field(default_factory=set)

    @property
    def pos(self) -> Position:
        return Position(self.epoch, self.version, self.checksum)

    def apply(self, env: Envelope) -> None:
        checksum = self.digester.advance(self.checksum, env.changes)
        if checksum != env.checksum:
            raise ProtocolError("checksum", reason="checksum")
        self.leaves.apply(env.changes)
        assert (env.epoch, env.version) not in self.applied, "a version applied twice"
        self.applied.add((env.epoch, env.version))
        self.epoch, self.version, self.checksum = env.epoch, env.version, checksum

    def load(self) -> None:
        s = self.server
        if on_load(self.pos, s.epoch, s.version).verdict is Verdict.ADOPT:
            self.epoch, self.version = s.epoch, s.version
            self.leaves = LeafSet(s.leaves)
            self.checksum = self.digester.checksum_of(self.leaves)

    def replay(self, first: int, last: int) -> None:
        for v in range(first, last + 1):  # bounded: last - first < replay_limit
            data = self.server.log.get(v)
            if data is None:
                return self.load()
            env = decode_event(data, namespace="app")
            if env.epoch != self.epoch or env.version != self.version + 1:
                return self.load()
            try:
                self.apply(env)
            except ProtocolError:
                return self.load()
        return None

    def act(self, d: Decision, env: Envelope | None = None) -> None:
        if d.verdict is Verdict.APPLY:
            assert env is not None
            self.apply(env)  # genuine events always verify: no fallback here
        elif d.verdict is Verdict.REPLAY:
            assert d.last - d.first < self.replay_limit
            self.replay(d.first, d.last)
        elif d.verdict is Verdict.LOAD:
            self.load()

    def receive(self, data: bytes) -> None:
        env = decode_event(data, namespace="app")
        self.act(on_event(self.pos, epoch=env.epoch, version=env.version,
                          checksum=env.checksum, reset=env.reset,
                          replay_limit=self.replay_limit), env)

    def backstop(self) -> Verdict:
        d = on_head(self.pos, *self.server.head(), recheck=False,
                    replay_limit=self.replay_limit)
        if d.verdict is Verdict.RECHECK:
            d = on_head(self.pos, *self.server.head(), recheck=True,
                        replay_limit=self.replay_limit)
        self.act(d)
        return d.verdict


KINDS = (["publish"] * 12 + ["stale"] * 2 + ["backstop"] * 2 + ["epoch", "rollback", "lose"])
operations = st.lists(st.tuples(
    st.sampled_from(KINDS),
    st.dictionaries(small_keys, st.one_of(st.none(), leaf_texts), min_size=1, max_size=4),
    st.sampled_from(["deliver", "drop", "drop", "twice"]),
    st.integers(0, 10_000),
), min_size=20, max_size=80)


@SETTINGS
@given(operations, st.integers(0, 8), st.integers(1, 6), st.integers(1, 8),
       st.sampled_from([None, b"k"]))
def test_a_subscriber_converges_on_the_server_and_never_goes_back(
        ops: list[tuple[Any, ...]], start_at: int, replay_limit: int, log_keep: int,
        key: bytes | None) -> None:
    digester = Digester(key)
    server = Server(digester, log_keep)
    sub = Subscriber(server, replay_limit, digester)
    started = False
    for i, (kind, sets, delivery, number) in enumerate(ops):
        if i == start_at:
            sub.load()
            started = True
        before = (sub.epoch, sub.version)
        if kind in ("publish", "epoch"):
            if kind == "publish":
                data = server.publish(sets)
            else:
                leaves = {k: t for k, t in sets.items() if t is not None}
                data = server.new_epoch(leaves, reset=number % 2 == 0)
            if data is not None and started and delivery != "drop":
                sub.receive(data)
                if delivery == "twice":
                    sub.receive(data)
        elif kind == "rollback":
            server.rollback(1 + number % 8)
        elif kind == "lose":
            server.lose()
        elif kind == "backstop" and started:
            sub.backstop()
        elif kind == "stale" and started and server.published:
            recent = min(len(server.published), 12)  # mostly recent: those of this epoch
            sub.receive(server.published[-1 - number % recent])
        # never backwards: not to an older epoch, not to a smaller version of the same one
        if before[0] is not None:
            assert sub.epoch is not None
            assert compare_epochs(sub.epoch, before[0]) >= 0
            if sub.epoch == before[0]:
                assert sub.version >= before[1]
    if not started:
        sub.load()
    # The history ends: a publisher that saw the server diverge recovers it (§7.3), then the
    # backstop brings the subscriber to the server's state.
    if (server.epoch, server.version) != server.seen[:2]:
        data = server.new_epoch(server.seen[2], reset=False)
        sub.receive(data)
    for _ in range(3):
        if sub.backstop() is Verdict.NOTHING:
            break
    assert (sub.epoch, sub.version, sub.checksum) == server.head()
    assert dict(sub.leaves) == server.leaves
    assert sub.backstop() is Verdict.NOTHING


@pytest.mark.parametrize("key", [None, b"k"])
def test_the_model_covers_the_interesting_paths(key: bytes | None) -> None:
    """A fixed history through replay, trimmed log, gap load, epoch change and rollback."""
    digester = Digester(key)
    server = Server(digester, log_keep=2)
    sub = Subscriber(server, 3, digester)
    sub.load()
    assert sub.pos == ABSENT
    sub.receive(server.publish({"a": "1"}) or b"")           # created: applied, no load
    assert (sub.version, sub.applied) == (1, {(server.epoch, 1)})
    server.publish({"a": "2"})                                 # dropped
    sub.receive(server.publish({"b": "1"}) or b"")           # gap of 2: replayed
    assert sub.version == 3
    for text in ("3", "4", "5"):
        server.publish({"a": text})                            # dropped; log keeps 2
    sub.receive(server.publish({"a": "6"}) or b"")           # gap of 4 > 3: load
    assert sub.version == 7
    server.log_keep = 100
    for text in ("7", "8", "9"):
        server.publish({"a": text})                            # dropped: server at 10
    server.rollback(5)                                         # restored backup: version 5
    assert sub.backstop() is Verdict.HOLD and sub.version == 7
    sub.receive(server.published[-1])                          # stale 10: replay fails, load
    assert sub.version == 7                                    # ... which must not adopt 5
    sub.receive(server.publish({"c.d": "1"}) or b"")         # recovered: a new epoch
    assert (sub.epoch, sub.version) == server.head()[:2]
    assert dict(sub.leaves) == server.leaves
