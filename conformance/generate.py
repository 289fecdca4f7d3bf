"""Write the protocol-2 conformance vectors (docs/protocol.md §14) as JSON files.

    python conformance/generate.py [DIR]      (default: the directory of this script)

Standard library only, and on purpose independent of hotreload: every message is serialised and
signed here, every expected state and checksum is computed here from the rules of
docs/protocol.md, so the vectors check the Python implementation instead of echoing it. The
output is deterministic: regenerating must leave the committed files unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

NS = "app"
E1 = "1764086400000-5f0c3a9e1b2d4c67"   # the history most cases follow
E2 = "1764172800000-0a1b2c3d4e5f6071"   # a newer history
E0 = "1764000000000-1111111111111111"   # an older one
E1_TWIN = "1764086400000-aaaaaaaaaaaaaaaa"  # another history begun in the same millisecond
I1 = "1764086400000-0c1d2e3f4a5b6c7d"   # an invalidation epoch
I2 = "1764090000000-7d6c5b4a3f2e1d0c"
KEY = "example-key"
ORIGIN = "publisher-7d9f:1"
TS = 1764086400.125
ZERO = "0" * 64
MAX_SAFE = 2**53 - 1

Leaves = dict[str, str]


# --------------------------------------------------------------------------- the rules, again


def text(value: Any) -> str:
    """A canonical leaf text (§2)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                      sort_keys=True)


def digest(key: str | None, name: str, leaf: str) -> int:
    data = name.encode() + b"\x00" + leaf.encode()
    if key is None:
        raw = hashlib.sha256(data).digest()
    else:
        raw = hmac.new(key.encode(), data, hashlib.sha256).digest()
    return int.from_bytes(raw, "big")


def checksum(leaves: Leaves, key: str | None = None) -> str:
    """§3, from scratch."""
    acc = 0
    for name, leaf in leaves.items():
        acc ^= digest(key, name, leaf)
    return f"{acc:064x}"


def advance(cs: str, changes: list[dict[str, str]], key: str | None = None) -> str:
    """§3, incrementally, from the changes' own texts."""
    acc = int(cs, 16)
    for ch in changes:
        if "old" in ch:
            acc ^= digest(key, ch["key"], ch["old"])
        if "new" in ch:
            acc ^= digest(key, ch["key"], ch["new"])
    return f"{acc:064x}"


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def sign(body: str, key: str) -> str:
    """§6: B without its final ``}`` + ``,"sig":"<hex>"}``."""
    sig = hmac.new(key.encode(), body.encode(), hashlib.sha256).hexdigest()
    return body[:-1] + ',"sig":"' + sig + '"}'


def changes_between(old: Leaves, new: Leaves) -> list[dict[str, str]]:
    out = []
    for name in sorted(set(old) | set(new), key=lambda k: k.encode()):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        ch = {"key": name}
        if before is not None:
            ch["old"] = before
        if after is not None:
            ch["new"] = after
        out.append(ch)
    return out


def event(members: dict[str, Any], key: str | None = None) -> str:
    """An event with the common members around ``members`` (in the spec's order)."""
    obj: dict[str, Any] = {"protocol": 2, "namespace": NS}
    obj.update(members)
    obj.setdefault("source", "cli")
    obj.setdefault("origin", ORIGIN)
    obj.setdefault("ts", TS)
    body = dumps(obj)
    return body if key is None else sign(body, key)


def config(epoch: str, version: int, cs: str, changes: list[dict[str, str]],
           key: str | None = None, **more: Any) -> str:
    members: dict[str, Any] = {"kind": "config", "epoch": epoch, "version": version,
                               "checksum": cs, "changes": changes}
    members.update(more)
    return event(members, key)


class History:
    """A publisher's history of one epoch: each `publish` gives the event and the state."""

    def __init__(self, epoch: str = E1, leaves: Leaves | None = None, version: int = 0,
                 key: str | None = None) -> None:
        self.epoch = epoch
        self.leaves: Leaves = dict(leaves or {})
        self.version = version
        self.key = key
        self.canary: dict[str, Any] | None = None
        self.log: dict[int, str] = {}

    @property
    def checksum(self) -> str:
        return checksum(self.leaves, self.key)

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "version": self.version, "checksum": self.checksum,
                "leaves": dict(sorted(self.leaves.items())), "canary": self.canary}

    def publish(self, sets: dict[str, str | None], **more: Any) -> str:
        new = dict(self.leaves)
        for name, leaf in sets.items():
            if leaf is None:
                new.pop(name, None)
            else:
                new[name] = leaf
        changes = changes_between(self.leaves, new)
        self.leaves = new
        self.version += 1
        if more.get("canary", 0) is None:
            self.canary = None
        message = config(self.epoch, self.version, self.checksum, changes, self.key, **more)
        self.log[self.version] = message
        return message

    def publish_canary(self, canary: dict[str, Any] | None) -> str:
        self.version += 1
        self.canary = canary
        message = event({"kind": "canary", "epoch": self.epoch, "version": self.version,
                         "checksum": self.checksum, "canary": canary}, self.key)
        self.log[self.version] = message
        return message


def start(h: History) -> dict[str, Any]:
    s = h.state()
    return {k: s[k] for k in ("epoch", "version", "leaves", "canary")}


def server(h: History) -> dict[str, Any]:
    return start(h)


ABSENT = {"epoch": None, "version": 0, "leaves": {}, "canary": None}
ABSENT_STATE = {"epoch": None, "version": 0, "checksum": ZERO, "leaves": {}, "canary": None}

BASE: Leaves = {"db.pool_size": "10", "db.host": '"db1"', "legacy.mode": '"compat"'}


def base_history(key: str | None = None) -> History:
    """E1 at version 6 holding BASE (what the §5.1 example starts from)."""
    return History(E1, BASE, 6, key)


def doc_example(key: str | None = None) -> tuple[History, str]:
    """The §5.1 example: version 7 on top of BASE."""
    h = base_history(key)
    return h, h.publish({"db.pool_size": "20", "feature.search": "true", "legacy.mode": None},
                        source="file:/etc/app/settings.yaml")


def step(message: str, result: str, state: dict[str, Any], reason: str = "",
         **more: Any) -> dict[str, Any]:
    expect: dict[str, Any] = {"result": result}
    if reason:
        expect["reason"] = reason
    out: dict[str, Any] = {"event": message, "expect": expect}
    out.update(more)
    out["state"] = state
    return out


def head_step(head: dict[str, Any] | None, result: str, state: dict[str, Any], reason: str = "",
              recheck: bool = False, **more: Any) -> dict[str, Any]:
    expect: dict[str, Any] = {"result": result}
    if reason:
        expect["reason"] = reason
    out: dict[str, Any] = {"head": head, "recheck": recheck, "expect": expect}
    out.update(more)
    out["state"] = state
    return out


def head_of(h: History) -> dict[str, Any]:
    return {"epoch": h.epoch, "version": h.version, "checksum": h.checksum}


def follow(name: str, about: str, begin: dict[str, Any], steps: list[dict[str, Any]],
           **more: Any) -> dict[str, Any]:
    case: dict[str, Any] = {"name": name, "type": "follow", "about": about, "namespace": NS,
                            "key": None}
    case.update(more)
    case["start"] = begin
    case["steps"] = steps
    return case


# --------------------------------------------------------------------------- checksums


def checksum_cases() -> list[dict[str, Any]]:
    example = {"db.pool_size": "20", "feature": "true"}
    unicode_leaves = {"größe": '"ü"', "emoji.🙂": "[1,2.5,null]", "empty": "{}"}
    document = {"db": {"host": "db1", "pool_size": 20}, "flags": [1, {"a": None}], "empty": {},
                "name": "größe"}
    doc_leaves = {"db.host": '"db1"', "db.pool_size": "20", "flags": '[1,{"a":null}]',
                  "empty": "{}", "name": '"größe"'}
    cases = [
        {"name": "empty state", "type": "checksum", "key": None, "leaves": {},
         "checksum": ZERO},
        {"name": "the §3 example, unsigned", "type": "checksum", "key": None,
         "leaves": example, "checksum": checksum(example),
         "digests": {k: f"{digest(None, k, v):064x}" for k, v in example.items()}},
        {"name": "the §3 example, signed with example-key", "type": "checksum", "key": KEY,
         "leaves": example, "checksum": checksum(example, KEY),
         "digests": {k: f"{digest(KEY, k, v):064x}" for k, v in example.items()}},
        {"name": "texts are compared as written: 1, 1.0, 1e0 differ", "type": "checksum",
         "key": None, "leaves": {"a": "1", "b": "1.0", "c": "1e0", "d": " 1"},
         "checksum": checksum({"a": "1", "b": "1.0", "c": "1e0", "d": " 1"})},
        {"name": "UTF-8 keys and texts", "type": "checksum", "key": None,
         "leaves": unicode_leaves, "checksum": checksum(unicode_leaves)},
        {"name": "a document as leaves (§2)", "type": "checksum", "key": None,
         "document": document, "leaves": doc_leaves, "checksum": checksum(doc_leaves)},
    ]
    return cases


# --------------------------------------------------------------------------- following


def apply_cases() -> list[dict[str, Any]]:
    cases = []

    h, v7 = doc_example()
    s7 = h.state()
    v8 = h.publish({"db.host": '"db2"', "feature.search": None, "feature.limits": "{}"})
    s8 = h.state()
    cases.append(follow(
        "normal apply and duplicates",
        "the §5.1 example applies to BASE at version 6; a duplicate of an applied version is "
        "ignored",
        start(base_history()),
        [step(v7, "apply", s7), step(v8, "apply", s8), step(v7, "ignore", s8),
         step(v8, "ignore", s8)]))

    # same version, other checksum
    h = base_history()
    v7 = h.publish({"db.pool_size": "20"})
    s7 = h.state()
    other = History(E1, BASE, 6)
    other.publish({"db.pool_size": "30"})
    cases.append(follow(
        "same version, another checksum",
        "version = n with another checksum than the subscriber's: it diverged; load (§8 step 6)",
        start(other), [step(v7, "load", s7, "checksum", server=server(h))]))

    # the next version with a wrong checksum
    h = base_history()
    bad = config(E1, 7, "f" * 64, [{"key": "db.pool_size", "old": "10", "new": "20"}])
    h.publish({"db.pool_size": "20"})
    cases.append(follow(
        "checksum mismatch",
        "the next version whose changes do not give its checksum: reject it and load",
        start(base_history()), [step(bad, "load", h.state(), "checksum", server=server(h))]))

    # the old text is not what the subscriber holds (checksum consistent with the event)
    changes = [{"key": "db.pool_size", "old": "11", "new": "20"}]
    forged_cs = advance(checksum(BASE), changes)
    bad = config(E1, 7, forged_cs, changes)
    h = base_history()
    h.publish({"db.pool_size": "20"})
    cases.append(follow(
        "old text mismatch",
        "a change whose old text is not the text held (its checksum is consistent with its own "
        "texts): reject and load",
        start(base_history()), [step(bad, "load", h.state(), "old", server=server(h))]))

    changes = [{"key": "feature.search", "old": "true", "new": "false"}]
    bad = config(E1, 7, advance(checksum(BASE), changes), changes)
    cases.append(follow(
        "old text for a key that does not exist",
        "an old text for a key the subscriber does not hold: reject and load",
        start(base_history()),
        [step(bad, "load", base_history().state(), "old", server=server(base_history()))]))

    # prefix conflicts
    conflicts = []
    for name, changes in (
        ("a leaf above existing leaves", [{"key": "db", "new": "1"}]),
        ("a leaf below an existing leaf", [{"key": "db.pool_size.max", "new": "5"}]),
        ("two new leaves, one below the other", [{"key": "x", "new": "1"},
                                                 {"key": "x.y", "new": "2"}]),
    ):
        msg = config(E1, 7, advance(checksum(BASE), changes), changes)
        conflicts.append(step(msg, "load", base_history().state(), "prefix",
                              server=server(base_history()), note=name))
    cases.append(follow(
        "prefix-conflicting changes",
        "changes whose result is not prefix-free (§2): reject and load (here the server still "
        "holds version 6, so the subscriber stays there)",
        start(base_history()), conflicts))

    h = base_history()
    restructure = h.publish({"db": '"postgres://db1"', "db.pool_size": None, "db.host": None})
    cases.append(follow(
        "replacing a subtree by a leaf",
        "setting db where db.* existed: the event deletes every db.* and sets db",
        start(base_history()), [step(restructure, "apply", h.state())]))

    h = History(E1)
    first = h.publish({"feature": "true", "db.pool_size": "20"})
    cases.append(follow(
        "the first event of a never-published namespace",
        "a subscriber that loaded an absent namespace applies its version-1 event (not reset) "
        "without a load and takes its epoch (§8 step 5)",
        ABSENT, [step(first, "apply", h.state())]))

    h = History(E1)
    h.publish({"a": "1"})
    second = h.publish({"b": "2"})
    cases.append(follow(
        "a never-published namespace, version 2 first",
        "anything but a version-1 event on an absent namespace: load",
        ABSENT, [step(second, "load", h.state(), "epoch", server=server(h))]))

    h = History(E1)
    h.leaves = {"big": '"state"'}
    h.version = 1
    reset = config(E1, 1, h.checksum, [], reset=True)
    cases.append(follow(
        "a reset event on an absent namespace",
        "a reset event carries no state: load it",
        ABSENT, [step(reset, "load", h.state(), "reset", server=server(h))]))

    h2 = History(E2, {"big": '"state"'}, 1)
    reset2 = config(E2, 1, h2.checksum, [], reset=True)
    cases.append(follow(
        "a reset event of a newer epoch",
        "a new epoch: load",
        start(base_history()), [step(reset2, "load", h2.state(), "epoch", server=server(h2))]))

    same = History(E1, {"big": '"state"'}, 1)
    reset_same = config(E1, 1, same.checksum, [], reset=True)
    reset_other = config(E1, 1, checksum({"other": "1"}), [], reset=True)
    cases.append(follow(
        "a reset event of the current epoch",
        "version 1 of the epoch the subscriber holds: covered (same checksum) or diverged",
        start(same),
        [step(reset_same, "ignore", same.state()),
         step(reset_other, "load", same.state(), "checksum", server=server(same))]))

    h2 = History(E2)
    first2 = h2.publish({"fresh": "true"})
    cases.append(follow(
        "a newer epoch's first event",
        "an event of another, newer epoch is never applied on top of the old state: load",
        start(base_history()),
        [step(first2, "load", h2.state(), "epoch", server=server(h2))]))

    h0 = History(E0, {"old": "1"}, 8)
    stale = h0.publish({"old": "2"})
    cur = History(E1, {"x": "1"}, 3)
    cases.append(follow(
        "an older epoch",
        "an event of an older epoch (a replay of an older history): reject, never go back",
        start(cur), [step(stale, "reject", cur.state(), "older-epoch")]))

    twin = History(E1_TWIN)
    twin_first = twin.publish({"t": "1"})
    cases.append(follow(
        "another epoch of the same millisecond",
        "epochs of the same <ms> are different histories, neither older: load",
        start(base_history()),
        [step(twin_first, "load", twin.state(), "epoch", server=server(twin))]))

    # canaries
    h = base_history()
    canary = {"id": "c-42", "target": {"service": "api", "percent": 50},
              "changes": [{"key": "db.pool_size", "old": "10", "new": "40"}], "base": 6}
    start_canary = h.publish_canary(canary)
    s7 = h.state()
    promote = h.publish({"db.pool_size": "40"}, canary=None)
    s8 = h.state()
    h_abort = base_history()
    h_abort.publish_canary(canary)
    abort_from = start(h_abort)
    abort = h_abort.publish_canary(None)
    bad_canary = event({"kind": "canary", "epoch": E1, "version": 7, "checksum": "e" * 64,
                        "canary": canary})
    cases.append(follow(
        "canary start and promotion",
        "a canary event takes a version and keeps the checksum; promoting is a config event "
        "with the canary's changes and \"canary\": null",
        start(base_history()),
        [step(start_canary, "apply", s7), step(promote, "apply", s8)]))
    cases.append(follow(
        "canary abort", "a canary event with \"canary\": null ends the canary",
        abort_from, [step(abort, "apply", h_abort.state())]))
    cases.append(follow(
        "canary event with another checksum",
        "a canary event changes no leaf: its checksum must be the subscriber's",
        start(base_history()),
        [step(bad_canary, "load", base_history().state(), "checksum",
              server=server(base_history()))]))
    return cases


def gap_cases() -> list[dict[str, Any]]:
    cases = []
    h = base_history()
    h.publish({"a": "1"})
    s7 = h.state()
    v8 = h.publish({"a": "2"})
    v9 = h.publish({"b": "1"})
    v10 = h.publish({"a": None})
    s10 = h.state()
    cases.append(follow(
        "gap, replayed",
        "version > n + 1 within replay_limit: read n+1..version from the log and apply",
        start_at(s7), [step(v10, "replay", s10, log=[v8, v9, v10])]))
    cases.append(follow(
        "gap, log trimmed",
        "the log no longer holds n+1: load",
        start_at(s7), [step(v10, "replay", s10, log=[v9, v10], server=server(h))]))
    cases.append(follow(
        "gap beyond replay_limit",
        "a gap larger than replay_limit: load, without reading the log",
        start_at(s7), [step(v10, "load", s10, "gap", server=server(h))], replay_limit=2))
    bad_v9 = config(E1, 9, "d" * 64, [{"key": "b", "new": "1"}])
    cases.append(follow(
        "gap, an entry fails its checksum",
        "a replayed entry that does not verify: load",
        start_at(s7), [step(v10, "replay", s10, log=[v8, bad_v9, v10], server=server(h))]))
    foreign = config(E2, 9, ZERO, [])
    cases.append(follow(
        "gap, an entry of another epoch",
        "every replayed entry must be of the subscriber's epoch: else load",
        start_at(s7), [step(v10, "replay", s10, log=[v8, foreign, v10], server=server(h))]))
    h8 = base_history()
    h8.publish({"a": "1"})
    h8.publish({"a": "2"})
    s8 = h8.state()
    h9 = base_history()
    for sets in ({"a": "1"}, {"a": "2"}, {"b": "1"}):
        h9.publish(sets)
    s9 = h9.state()
    cases.append(follow(
        "out of order",
        "version 9 arrives before 8: 8..9 are replayed; 8 arriving later is a duplicate",
        start_at(s7), [step(v9, "replay", s9, log=[v8, v9]), step(v8, "ignore", s9),
                       step(v10, "apply", s10)]))
    cases.append(follow(
        "duplicates and gaps mixed",
        "one event can be delivered twice, some not at all",
        start_at(s7), [step(v8, "apply", s8), step(v8, "ignore", s8),
                       step(v10, "replay", s10, log=[v9, v10]), step(v9, "ignore", s10)]))
    return cases


def start_at(state: dict[str, Any]) -> dict[str, Any]:
    return {k: state[k] for k in ("epoch", "version", "leaves", "canary")}


def head_cases() -> list[dict[str, Any]]:
    cases = []
    h = base_history()
    s6 = h.state()
    v7 = h.publish({"a": "1"})
    v8 = h.publish({"a": "2"})
    s8 = h.state()
    cases.append(follow(
        "backstop: current", "the head is what the subscriber holds: nothing to do",
        start_at(s6), [head_step({"epoch": E1, "version": 6, "checksum": s6["checksum"]},
                                 "nothing", s6)]))
    cases.append(follow(
        "backstop: server ahead",
        "ahead: look again after the in-flight grace; still ahead: replay",
        start_at(s6),
        [head_step(head_of(h), "recheck", s6, reason="ahead"),
         head_step(head_of(h), "replay", s8, recheck=True, log=[v7, v8])]))
    cases.append(follow(
        "backstop: server far ahead",
        "still ahead past replay_limit: load",
        start_at(s6), [head_step(head_of(h), "load", s8, "gap", recheck=True,
                                 server=server(h))], replay_limit=1))
    cases.append(follow(
        "backstop: same version, other checksum", "diverged: load",
        start_at(s6),
        [head_step({"epoch": E1, "version": 6, "checksum": "c" * 64}, "load", s6, "checksum",
                   server=start_at(s6))]))
    cases.append(follow(
        "backstop: server behind",
        "the server holds an older version of the epoch (a restored backup): keep the current "
        "settings, report; never move backwards",
        start_at(s8), [head_step({"epoch": E1, "version": 6, "checksum": s6["checksum"]},
                                 "hold", s8)]))
    cases.append(follow(
        "backstop: older epoch", "the head is of an older epoch: hold",
        start_at(s8), [head_step({"epoch": E0, "version": 50, "checksum": ZERO}, "hold", s8)]))
    h2 = History(E2, {"z": "1"}, 4)
    cases.append(follow(
        "backstop: newer epoch", "the head is of a newer epoch: load",
        start_at(s8), [head_step(head_of(h2), "load", h2.state(), "epoch", server=server(h2))]))
    cases.append(follow(
        "backstop: no head", "no head at all (Redis lost its data): keep the settings, report",
        start_at(s8), [head_step(None, "hold", s8)]))
    created = History(E1)
    created.publish({"a": "1"})
    cases.append(follow(
        "backstop: namespace created since the load",
        "a head appears on an absent namespace: look again, then load",
        ABSENT, [head_step(head_of(created), "recheck", ABSENT_STATE),
                 head_step(head_of(created), "load", created.state(), "created", recheck=True,
                           server=server(created))]))
    cases.append(follow(
        "backstop: absent and still absent", "no head, none loaded: nothing",
        ABSENT, [head_step(None, "nothing", ABSENT_STATE)]))
    older = base_history()
    cases.append(follow(
        "loads never go backwards",
        "a load returns the server's state; the subscriber adopts it only if it is not older "
        "(same epoch and version >= n, or a newer epoch)",
        start_at(s8),
        [{"server": start_at(older.state()), "expect": {"result": "hold"}, "state": s8},
         {"server": start_at(History(E0, {"q": "1"}, 99).state()),
          "expect": {"result": "hold"}, "state": s8},
         {"server": ABSENT, "expect": {"result": "hold"}, "state": s8},
         {"server": start_at(s8), "expect": {"result": "adopt"}, "state": s8},
         {"server": start_at(h2.state()), "expect": {"result": "adopt"}, "state": h2.state()}]))
    cases.append(follow(
        "the first load", "before the first load anything is adopted",
        {"epoch": None, "version": -1, "leaves": {}, "canary": None},
        [{"server": ABSENT, "expect": {"result": "adopt"}, "state": ABSENT_STATE}]))
    return cases


def long(n: int) -> str:
    return "x" * n


def reject_cases() -> list[dict[str, Any]]:
    h, good = doc_example()
    s6 = base_history().state()
    good_obj = json.loads(good)

    def variant(change: Callable[[dict[str, Any]], None]) -> str:
        obj = json.loads(good)
        change(obj)
        return dumps(obj)

    def without(name: str) -> str:
        return variant(lambda o: o.pop(name))

    def setting(name: str, value: Any) -> str:
        def change(o: dict[str, Any]) -> None:
            o[name] = value
        return variant(change)

    def with_changes(changes: list[Any]) -> str:
        return setting("changes", changes)

    rejects: list[tuple[str, str, str]] = []  # (note, message, reason)
    for p in (1, 3, 0, -2):
        rejects.append((f"protocol {p}", setting("protocol", p), "protocol"))
    rejects += [
        ("protocol missing", without("protocol"), "field"),
        ("protocol as a string", setting("protocol", "2"), "field"),
        ("namespace of another channel", setting("namespace", "billing"), "namespace"),
        ("namespace not a name", setting("namespace", "a b"), "field"),
        ("kind unknown", setting("kind", "settings"), "kind"),
        ("kind missing", without("kind"), "field"),
        ("an invalidation on the config channel",
         event({"kind": "invalidate", "epoch": I1, "seq": 1, "keys": [], "prefixes": [],
                "all": True}), "kind"),
    ]
    for name in ("namespace", "epoch", "source", "origin", "ts", "version", "checksum",
                 "changes"):
        rejects.append((f"{name} missing", without(name), "field"))
    mistyped: list[tuple[str, Any]] = [
        ("version", "7"), ("version", 7.5), ("version", True), ("version", None),
        ("checksum", good_obj["checksum"].upper()), ("checksum", good_obj["checksum"][:63]),
        ("checksum", 7), ("changes", {"db.pool_size": "20"}), ("ts", "1764086400"),
        ("namespace", 5), ("kind", 5), ("kind", None),
        ("ts", True), ("source", 1), ("origin", None), ("epoch", 1764086400000),
        ("epoch", "01764086400000-5f0c3a9e1b2d4c67"), ("epoch", "1764086400000-5F0C3A9E1B2D4C67"),
        ("epoch", "1764086400000-5f0c3a9e1b2d4c6"), ("epoch", "9007199254740992-5f0c3a9e1b2d4c67"),
        ("epoch", ""), ("reset", "yes"), ("ack", 1), ("canary", {"id": "c"}),
    ]
    for name, value in mistyped:
        rejects.append((f"{name} = {json.dumps(value)}", setting(name, value), "field"))
    rejects += [
        ("version 0", setting("version", 0), "range"),
        ("version -1", setting("version", -1), "range"),
        ("version 2^53", setting("version", MAX_SAFE + 1), "range"),
        ("ts negative", setting("ts", -0.5), "range"),
        ("a reset event of version 2", setting("reset", True), "field"),
    ]
    ch = good_obj["changes"]
    bad_changes: list[tuple[str, list[Any], str]] = [
        ("a change that is not an object", ["db.pool_size"], "field"),
        ("a change without key", [{"old": "10", "new": "20"}], "field"),
        ("a change with neither old nor new", [{"key": "db.pool_size"}], "field"),
        ("old null", [{"key": "db.pool_size", "old": None, "new": "20"}], "field"),
        ("new as a number", [{"key": "db.pool_size", "old": "10", "new": 20}], "field"),
        ("unsorted changes", [ch[1], ch[0], ch[2]], "field"),
        ("a key twice", [ch[0], ch[0]], "field"),
        ("empty key", [{"key": "", "new": "1"}], "key"),
        ("empty segment", [{"key": "a..b", "new": "1"}], "key"),
        ("leading dot", [{"key": ".a", "new": "1"}], "key"),
        ("trailing dot", [{"key": "a.", "new": "1"}], "key"),
        ("33 segments", [{"key": ".".join(["s"] * 33), "new": "1"}], "key"),
        ("513 bytes", [{"key": long(513), "new": "1"}], "key"),
        ("513 bytes in UTF-8 (257 characters)", [{"key": "é" * 256 + "x", "new": "1"}], "key"),
        ("a control character", [{"key": "a\u0001b", "new": "1"}], "key"),
        ("a newline", [{"key": "a\nb", "new": "1"}], "key"),
        ("new is empty", [{"key": "a", "new": ""}], "text"),
        ("new is not JSON", [{"key": "a", "new": "yes"}], "text"),
        ("new is NaN", [{"key": "a", "new": "NaN"}], "text"),
        ("new is two values", [{"key": "a", "new": "1 2"}], "text"),
        ("new is a non-empty object", [{"key": "a", "new": '{"b":1}'}], "text"),
        ("old is not JSON", [{"key": "db.pool_size", "old": "'10'", "new": "20"}], "text"),
        ("new nests 33 levels", [{"key": "a", "new": "[" * 33 + "]" * 33}], "text"),
    ]
    for note, changes, reason in bad_changes:
        rejects.append((note, with_changes(changes), reason))
    rejects += [
        ("not JSON", "config: version 7", "json"),
        ("a JSON array", "[" + good + "]", "json"),
        ("trailing garbage", good + "x", "json"),
        ("NaN as ts", good.replace('"ts":1764086400.125', '"ts":NaN'), "json"),
        ("nested 10,000 levels", '{"protocol":2,"deep":' + "[" * 10000 + "]" * 10000 + "}",
         "json"),
        ("an unknown member nesting 64 levels (65 with the event)",
         good[:-1] + ',"deep":' + "[" * 64 + "]" * 64 + "}", "json"),
    ]
    steps = [step(msg, "reject", s6, reason, note=note) for note, msg, reason in rejects]
    steps.append({"event_hex": (good[:-1] + ',"x":"\xff"}').encode("latin-1").hex(),
                  "expect": {"result": "reject", "reason": "json"}, "state": s6,
                  "note": "not UTF-8"})
    steps.append(step(good + " ", "apply", h.state(),
                      note="whitespace around the object is JSON"))
    cases = [follow(
        "rejected events",
        "every message here breaks one rule of §5 and is rejected; the state stays at version "
        "6 throughout (the last step applies the valid event, with trailing whitespace)",
        start(base_history()), steps)]

    pretty = json.dumps(good_obj, indent=2, ensure_ascii=False)
    unknown = variant(lambda o: o.update({"trace": {"id": [1, 2]}, "zz": None}))
    cases.append(follow(
        "accepted variations",
        "pretty-printed JSON, member order, unknown members (ignored), texts with spaces, "
        "UTF-8 keys and texts, {} leaves",
        start(base_history()),
        [step(pretty, "apply", h.state()),
         step(unknown, "ignore", h.state())]))
    h_var = base_history()
    reordered = json.loads(h_var.publish({"größe": '"ü"', "ws": " [ 1 , 2 ] ", "e": "{}"}))
    msg = dumps(dict(reversed(list(reordered.items()))))
    cases.append(follow(
        "member order does not matter",
        "the same event with its members in reverse order",
        start(base_history()), [step(msg, "apply", h_var.state())]))

    cases.append(follow(
        "oversized", "a message over max_message_bytes is rejected before it is parsed",
        start(base_history()),
        [step(good, "reject", s6, "size", note=f"{len(good.encode())} bytes")],
        max_message_bytes=len(good.encode()) - 1))
    return cases


def signing_cases() -> list[dict[str, Any]]:
    h, signed = doc_example(KEY)
    s6 = base_history(KEY).state()
    body = signed[:signed.rindex(',"sig":"')] + "}"
    sig = signed[-66:-2]
    unsigned = body
    other_key = sign(body, "another-key")
    tampered = signed.replace('"version":7', '"version":8')
    upper = body[:-1] + ',"sig":"' + sig.upper() + '"}'
    spaced = body[:-1] + ', "sig":"' + sig + '"}'
    spaced_end = signed + " "
    not_last = body[:-1].replace('"protocol":2,', '"protocol":2,"sig":"' + sig + '",', 1) + "}"
    short = body[:-1] + ',"sig":"' + sig[:63] + '"}'
    steps = [
        step(unsigned, "reject", s6, "signature", note="unsigned"),
        step(other_key, "reject", s6, "signature", note="signed with another key"),
        step(tampered, "reject", s6, "signature", note="changed after signing"),
        step(upper, "reject", s6, "signature", note="upper-case hex: unsigned"),
        step(spaced, "reject", s6, "signature", note="a space in the tail: unsigned"),
        step(spaced_end, "reject", s6, "signature", note="a space after the tail: unsigned"),
        step(not_last, "reject", s6, "signature", note="sig not the last member: unsigned"),
        step(short, "reject", s6, "signature", note="63 hex digits: unsigned"),
        step(signed, "apply", h.state(), note="signed with example-key"),
    ]
    cases = [follow(
        "signed events",
        "with the key example-key: leaf digests are HMACs (§3) and every event must carry the "
        "exact sig tail of §6",
        start(base_history(KEY)), steps, key=KEY)]
    h_plain = base_history()
    h_plain.publish({"db.pool_size": "20", "feature.search": "true", "legacy.mode": None},
                    source="file:/etc/app/settings.yaml")
    cases.append(follow(
        "a signed event without a key",
        "a subscriber without a key ignores sig (the checksum here is the unsigned one)",
        start(base_history()),
        [step(sign(h_plain.log[7], KEY), "apply", h_plain.state())]))
    return cases


# --------------------------------------------------------------------------- invalidations


def inv(epoch: str, seq: int, keys: list[str] | None = None, prefixes: list[str] | None = None,
        everything: bool = False, key: str | None = None) -> str:
    return event({"kind": "invalidate", "epoch": epoch, "seq": seq, "keys": keys or [],
                  "prefixes": prefixes or [], "all": everything,
                  "source": "postgres:cache_invalidate", "ts": 1764086401.5}, key)


def drop(keys: list[str] | None = None, prefixes: list[str] | None = None,
         everything: bool = False) -> dict[str, Any]:
    if everything:
        return {"keys": [], "prefixes": [], "all": True}
    return {"keys": sorted(keys or []), "prefixes": sorted(prefixes or []), "all": False}


def istep(message: str | None, result: str, epoch: str | None, seq: int, dropped: dict[str, Any],
          reason: str = "", head: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    expect: dict[str, Any] = {"result": result}
    if reason:
        expect["reason"] = reason
    out: dict[str, Any] = {"event": message} if message is not None else {"head": head}
    out["expect"] = expect
    out.update(more)
    out["state"] = {"epoch": epoch, "seq": seq}
    out["drop"] = dropped
    return out


def invalidation_cases() -> list[dict[str, Any]]:
    e = [inv(I1, n, [f"user:{n}"], ["orders:"] if n % 2 else []) for n in range(0, 14)]
    none = drop()
    cases = [{
        "name": "invalidations in order, duplicates, gaps",
        "type": "invalidate",
        "about": "seq = s + 1 applies; seq <= s is ignored; a gap within replay_limit is read "
                 "from the invalidation log; a gap the log cannot cover drops everything",
        "namespace": NS, "key": None,
        "start": {"epoch": I1, "seq": 7},
        "steps": [
            istep(e[8], "apply", I1, 8, drop(["user:8"])),
            istep(e[8], "ignore", I1, 8, none),
            istep(e[11], "replay", I1, 11, drop(["user:9", "user:10", "user:11"], ["orders:"]),
                  log=[e[9], e[10], e[11]]),
            istep(e[13], "replay", I1, 13, drop(everything=True), log=[e[13]]),
            istep(inv(I2, 1, ["a"]), "adopt", I2, 1, drop(everything=True)),
            istep(inv(I1, 14, ["b"]), "adopt", I1, 14, drop(everything=True)),
        ]}]
    cases.append({
        "name": "invalidation gap beyond replay_limit", "type": "invalidate",
        "about": "past replay_limit: drop everything and adopt the event's (epoch, seq)",
        "namespace": NS, "key": None, "replay_limit": 2, "start": {"epoch": I1, "seq": 7},
        "steps": [istep(e[11], "adopt", I1, 11, drop(everything=True))]})
    cases.append({
        "name": "the first invalidations", "type": "invalidate",
        "about": "(null, 0): the head was read and absent, so seq 1 loses nothing; (null, -1): "
                 "nothing known yet, drop everything",
        "namespace": NS, "key": None, "start": {"epoch": None, "seq": 0},
        "steps": [istep(inv(I1, 1, ["k"]), "apply", I1, 1, drop(["k"]))]})
    cases.append({
        "name": "a history begun after the head was read", "type": "invalidate",
        "about": "(null, 0) and seq > 1: the history began after the head was read, so it is "
                 "all in the invalidation log: replay 1..seq",
        "namespace": NS, "key": None, "start": {"epoch": None, "seq": 0},
        "steps": [istep(inv(I1, 2, ["m"]), "replay", I1, 2, drop(["k", "m"]),
                        log=[inv(I1, 1, ["k"]), inv(I1, 2, ["m"])])]})
    cases.append({
        "name": "an invalidation after an unread head", "type": "invalidate",
        "about": "nothing known of the invalidation stream: drop everything and adopt",
        "namespace": NS, "key": None, "start": {"epoch": None, "seq": -1},
        "steps": [istep(inv(I1, 5, ["k"]), "adopt", I1, 5, drop(everything=True))]})
    cases.append({
        "name": "invalidation head after a reconnect", "type": "invalidate",
        "about": "the head compared with (I, s): same: nothing; ahead: replay s+1..seq; behind "
                 "(a restored server): drop everything and adopt; another epoch: drop "
                 "everything; absent: drop everything and hold (null, 0); a head found while "
                 "holding (null, 0): a history begun since, replayed from seq 1",
        "namespace": NS, "key": None, "start": {"epoch": I1, "seq": 7},
        "steps": [
            istep(None, "nothing", I1, 7, none, head={"epoch": I1, "seq": 7}),
            istep(None, "replay", I1, 9, drop(["user:8", "user:9"], ["orders:"]),
                  head={"epoch": I1, "seq": 9}, log=[e[8], e[9]]),
            istep(None, "adopt", I1, 4, drop(everything=True), head={"epoch": I1, "seq": 4}),
            istep(None, "adopt", I2, 2, drop(everything=True), head={"epoch": I2, "seq": 2}),
            istep(None, "adopt", None, 0, drop(everything=True), head=None),
            istep(None, "nothing", None, 0, none, head=None),
            istep(None, "replay", I2, 2, drop(["a", "b"]), head={"epoch": I2, "seq": 2},
                  log=[inv(I2, 1, ["a"]), inv(I2, 2, ["b"])]),
        ]})
    rejects = [
        ("seq 0", inv(I1, 0), "range"),
        ("seq 2^53", inv(I1, MAX_SAFE + 1), "range"),
        ("keys not an array", event({"kind": "invalidate", "epoch": I1, "seq": 8, "keys": "k",
                                     "prefixes": [], "all": False}), "field"),
        ("a key not a string", event({"kind": "invalidate", "epoch": I1, "seq": 8,
                                      "keys": [1], "prefixes": [], "all": False}), "field"),
        ("all missing", event({"kind": "invalidate", "epoch": I1, "seq": 8, "keys": [],
                               "prefixes": []}), "field"),
        ("prefixes missing", event({"kind": "invalidate", "epoch": I1, "seq": 8, "keys": [],
                                    "all": True}), "field"),
        ("seq missing", event({"kind": "invalidate", "epoch": I1, "keys": [], "prefixes": [],
                               "all": True}), "field"),
        ("a config event on the invalidation channel",
         config(E1, 7, ZERO, []), "kind"),
        ("another namespace", inv(I1, 8).replace('"namespace":"app"',
                                                 '"namespace":"billing"'), "namespace"),
    ]
    cases.append({
        "name": "rejected invalidations", "type": "invalidate",
        "about": "each breaks one rule of §9 or §5", "namespace": NS, "key": None,
        "start": {"epoch": I1, "seq": 7},
        "steps": [istep(msg, "reject", I1, 7, none, reason, note=note)
                  for note, msg, reason in rejects]})
    signed = inv(I1, 8, ["user:42"], ["orders:"], key=KEY)
    cases.append({
        "name": "signed invalidations", "type": "invalidate",
        "about": "with a key, invalidation events are signed like every event",
        "namespace": NS, "key": KEY, "start": {"epoch": I1, "seq": 7},
        "steps": [istep(inv(I1, 8, ["user:42"]), "reject", I1, 7, none, "signature"),
                  istep(signed, "apply", I1, 8, drop(["user:42"], ["orders:"]))]})
    return cases


# --------------------------------------------------------------------------- canaries


def glob(pattern: str, value: str) -> bool:
    """``*`` any run, ``?`` one character, everything else literal (§10)."""
    if not pattern:
        return not value
    if pattern[0] == "*":
        return any(glob(pattern[1:], value[i:]) for i in range(len(value) + 1))
    if not value:
        return False
    return (pattern[0] == "?" or pattern[0] == value[0]) and glob(pattern[1:], value[1:])


def bucket(cid: str, instance: str) -> int:
    d = hashlib.sha256(cid.encode() + b"\x00" + instance.encode()).digest()
    return int.from_bytes(d[:2], "big") % 100


def matches(canary: dict[str, Any], service: str, instance: str) -> bool:
    t = canary["target"]
    if set(t) - {"service", "instance", "percent"}:
        return False
    if "service" in t and not glob(t["service"], service):
        return False
    if "instance" in t and not glob(t["instance"], instance):
        return False
    return "percent" not in t or bucket(canary["id"], instance) < t["percent"]


def canary_cases() -> list[dict[str, Any]]:
    instances = [("api", "api-1"), ("api", "api-2"), ("api", "api-10"), ("api", "api-x"),
                 ("web", "web-1"), ("", "worker-3"), ("api-v2", "api-v2-1"),
                 ("a*i", "a[1]"), ("api", "host-7:123:9f3a")]
    changes = [{"key": "db.pool_size", "old": "10", "new": "40"}]
    targets = [
        ("every instance", {}),
        ("one service", {"service": "api"}),
        ("a glob on instances", {"instance": "api-?"}),
        ("a star glob", {"service": "api*", "instance": "*1*"}),
        ("globs are literal but for * and ?", {"service": "a*i", "instance": "a[1]"}),
        ("a percentage", {"percent": 50}),
        ("a fractional percentage", {"percent": 12.5}),
        ("0 percent", {"percent": 0}),
        ("100 percent", {"percent": 100}),
        ("service and percent", {"service": "api", "percent": 70}),
        ("an unknown target member matches nothing", {"service": "*", "region": "eu"}),
    ]
    cases = []
    for name, target in targets:
        canary = {"id": "c-42", "target": target, "changes": changes, "base": 6}
        cases.append({
            "name": f"canary target: {name}", "type": "canary", "canary": canary,
            "instances": [{"service": s, "instance": i, "bucket": bucket("c-42", i),
                           "matches": matches(canary, s, i)} for s, i in instances]})
    leaves = {"db.pool_size": "12", "db.host": '"db1"', "feature": "true", "x.y": "1"}
    canary = {"id": "c-43", "target": {}, "base": 6, "changes": [
        {"key": "db.pool_size", "old": "10", "new": "40"},
        {"key": "feature", "old": "true"},
        {"key": "x", "new": "2"},
        {"key": "z.w", "new": '"new"'},
    ]}
    cases.append({
        "name": "canary settings", "type": "canary", "canary": canary,
        "about": "a matching instance sees the state with the canary's changes applied: a set "
                 "key replaces the key and any leaf above or below it, a delete removes it; old "
                 "texts are not checked (the base moved on from 10 to 12)",
        "instances": [{"service": "api", "instance": "api-1", "matches": True}],
        "leaves": leaves,
        "effective": {"db.pool_size": "40", "db.host": '"db1"', "x": "2", "z.w": '"new"'}})
    bad = [
        ("percent over 100", {"id": "c", "target": {"percent": 101}, "changes": [], "base": 1},
         "range"),
        ("percent negative", {"id": "c", "target": {"percent": -1}, "changes": [], "base": 1},
         "range"),
        ("percent a string", {"id": "c", "target": {"percent": "5"}, "changes": [], "base": 1},
         "field"),
        ("id not a name", {"id": "c 1", "target": {}, "changes": [], "base": 1}, "field"),
        ("id missing", {"target": {}, "changes": [], "base": 1}, "field"),
        ("target missing", {"id": "c", "changes": [], "base": 1}, "field"),
        ("service not a string", {"id": "c", "target": {"service": 1}, "changes": [],
                                  "base": 1}, "field"),
        ("base negative", {"id": "c", "target": {}, "changes": [], "base": -1}, "range"),
        ("changes unsorted", {"id": "c", "target": {}, "base": 1, "changes": [
            {"key": "b", "new": "1"}, {"key": "a", "new": "1"}]}, "field"),
    ]
    h = base_history()
    s6 = h.state()
    cases.append(follow(
        "rejected canary events", "a canary event with an invalid canary object is rejected",
        start(h),
        [step(event({"kind": "canary", "epoch": E1, "version": 7, "checksum": s6["checksum"],
                     "canary": c}), "reject", s6, reason, note=note) for note, c, reason in bad]
        + [step(event({"kind": "canary", "epoch": E1, "version": 7,
                       "checksum": s6["checksum"]}), "reject", s6, "field",
                note="canary member missing")]))
    return cases


# --------------------------------------------------------------------------- stored hashes


def head_fields(epoch: str, version: int, cs: str, count: int, canary: str | None = None,
                key: str | None = None) -> dict[str, str]:
    fields = {"protocol": "2", "epoch": epoch, "version": str(version), "checksum": cs,
              "count": str(count), "updated_at": "1764086400.125"}
    if canary is not None:
        fields["canary"] = canary
    if key is not None:
        cd = hashlib.sha256(canary.encode()).hexdigest() if canary else ""
        msg = f"hotreload/2 meta\n{NS}\n{epoch}\n{version}\n{cs}\n{cd}"
        fields["sig"] = hmac.new(key.encode(), msg.encode(), hashlib.sha256).hexdigest()
    return fields


def checkpoint_fields(epoch: str, version: int, cs: str, count: int, settings: str,
                      key: str | None = None) -> dict[str, str]:
    d = hashlib.sha256(settings.encode()).hexdigest()
    fields = {"protocol": "2", "epoch": epoch, "version": str(version), "checksum": cs,
              "count": str(count), "settings": settings, "digest": d}
    if key is not None:
        msg = f"hotreload/2 checkpoint\n{NS}\n{epoch}\n{version}\n{cs}\n{d}"
        fields["sig"] = hmac.new(key.encode(), msg.encode(), hashlib.sha256).hexdigest()
    return fields


def stored_cases() -> list[dict[str, Any]]:
    cs = checksum(BASE)
    canary_obj = {"base": 6, "changes": [{"key": "db.pool_size", "new": "40", "old": "10"}],
                  "id": "c-42", "target": {"percent": 50, "service": "api"}}
    canary_text = dumps(canary_obj)
    good = head_fields(E1, 6, cs, 3)
    ok = {"result": "ok", "epoch": E1, "version": 6, "checksum": cs, "count": 3,
          "updated_at": 1764086400.125, "canary": None}

    def head(name: str, fields: dict[str, str], expect: dict[str, Any],
             key: str | None = None) -> dict[str, Any]:
        return {"name": f"head: {name}", "type": "head", "namespace": NS, "key": key,
                "fields": fields, "expect": expect}

    def rej(reason: str) -> dict[str, Any]:
        return {"result": "reject", "reason": reason}

    cases = [
        head("valid", good, ok),
        head("absent", {}, {"result": "absent"}),
        head("protocol 1", {**good, "protocol": "1"}, rej("protocol")),
        head("no protocol", {k: v for k, v in good.items() if k != "protocol"}, rej("field")),
        head("version 0", {**good, "version": "0"}, rej("range")),
        head("version with a leading zero", {**good, "version": "06"}, rej("field")),
        head("version 2^53", {**good, "version": str(MAX_SAFE + 1)}, rej("range")),
        head("version not a number", {**good, "version": "six"}, rej("field")),
        head("checksum upper-case", {**good, "checksum": cs.upper()}, rej("field")),
        head("epoch malformed", {**good, "epoch": "e1"}, rej("field")),
        head("count negative", {**good, "count": "-1"}, rej("field")),
        head("updated_at nan", {**good, "updated_at": "nan"}, rej("field")),
        head("with a canary", head_fields(E1, 7, cs, 3, canary_text),
             {**ok, "version": 7, "canary": canary_obj}),
        head("signed", head_fields(E1, 6, cs, 3, key=KEY), ok, KEY),
        head("signed, with a canary", head_fields(E1, 7, cs, 3, canary_text, KEY),
             {**ok, "version": 7, "canary": canary_obj}, KEY),
        head("signed, canary changed",
             {**head_fields(E1, 7, cs, 3, canary_text, KEY),
              "canary": canary_text.replace("40", "41")}, rej("signature"), KEY),
        head("signed, version changed",
             {**head_fields(E1, 6, cs, 3, key=KEY), "version": "7"}, rej("signature"), KEY),
        head("unsigned with a key", good, rej("signature"), KEY),
    ]
    settings = dumps({"db": {"host": "db1", "pool_size": 10}, "legacy": {"mode": "compat"}})
    cp_ok = {"result": "ok", "epoch": E1, "version": 6, "checksum": cs, "count": 3,
             "settings": json.loads(settings)}

    def cp(name: str, fields: dict[str, str], expect: dict[str, Any],
           key: str | None = None) -> dict[str, Any]:
        return {"name": f"checkpoint: {name}", "type": "checkpoint", "namespace": NS,
                "key": key, "fields": fields, "expect": expect}

    good_cp = checkpoint_fields(E1, 6, cs, 3, settings)
    deep = "{" + '"a":{' * 64 + '"b":1' + "}" * 65
    cases += [
        cp("valid", good_cp, cp_ok),
        cp("absent", {}, {"result": "absent"}),
        cp("settings changed", {**good_cp, "settings": settings.replace("10", "11")},
           rej("digest")),
        cp("signed", checkpoint_fields(E1, 6, cs, 3, settings, KEY), cp_ok, KEY),
        cp("signed, checksum changed",
           {**checkpoint_fields(E1, 6, cs, 3, settings, KEY), "checksum": "1" * 64},
           rej("signature"), KEY),
        cp("unsigned with a key", good_cp, rej("signature"), KEY),
        cp("settings not an object", checkpoint_fields(E1, 6, cs, 3, "[1]"), rej("json")),
        cp("settings nest 65 levels", checkpoint_fields(E1, 6, cs, 3, deep), rej("json")),
        cp("protocol 1", {**good_cp, "protocol": "1"}, rej("protocol")),
    ]

    def ih(name: str, fields: dict[str, str], expect: dict[str, Any]) -> dict[str, Any]:
        return {"name": f"invalidation head: {name}", "type": "invalidation-head",
                "fields": fields, "expect": expect}

    cases += [
        ih("valid", {"epoch": I1, "seq": "8"}, {"result": "ok", "epoch": I1, "seq": 8}),
        ih("absent", {}, {"result": "absent"}),
        ih("seq 0", {"epoch": I1, "seq": "0"}, rej("range")),
        ih("seq missing", {"epoch": I1}, rej("field")),
        ih("epoch malformed", {"epoch": "x", "seq": "3"}, rej("field")),
    ]
    return cases


def legacy_cases() -> list[dict[str, Any]]:
    settings = dumps({"db": {"pool_size": 10}, "feature": True})
    cs = "sha256:" + hashlib.sha256(settings.encode()).hexdigest()
    fields = {"protocol": "1", "epoch": "5f0c3a9e1b2d4c67", "version": "41",
              "settings": settings, "checksum": cs, "updated_at": "1764086000.5"}
    sig = hmac.new(KEY.encode(), f"{NS}\n5f0c3a9e1b2d4c67\n41\n{cs}".encode(),
                   hashlib.sha256).hexdigest()
    ok = {"result": "ok", "epoch": "5f0c3a9e1b2d4c67", "version": 41,
          "settings": json.loads(settings)}

    def case(name: str, f: dict[str, str], expect: dict[str, Any],
             key: str | None = None) -> dict[str, Any]:
        return {"name": f"protocol-1 snapshot: {name}", "type": "legacy", "namespace": NS,
                "key": key, "fields": f, "expect": expect}

    return [
        case("valid", fields, ok),
        case("absent", {}, {"result": "absent"}),
        case("migrated (protocol 2)", {**fields, "protocol": "2"}, {"result": "absent"}),
        case("checksum mismatch", {**fields, "settings": settings.replace("10", "11")},
             {"result": "reject", "reason": "checksum"}),
        case("signed", {**fields, "sig": sig}, ok, KEY),
        case("unsigned with a key", fields, {"result": "reject", "reason": "signature"}, KEY),
        {"name": "protocol-1 notice", "type": "legacy", "namespace": NS,
         "notice": dumps({"protocol": 2, "namespace": NS,
                          "notice": "migrated to protocol 2; upgrade hotreload"})},
    ]


# --------------------------------------------------------------------------- files


FILES: dict[str, tuple[str, Callable[[], list[dict[str, Any]]]]] = {
    "checksums.json": ("§2, §3: leaves and checksums", checksum_cases),
    "follow-apply.json": ("§5.1, §8: applying events, epochs, resets, canary events",
                          apply_cases),
    "follow-gaps.json": ("§8 step 6: duplicates, gaps, replays, trimmed logs", gap_cases),
    "follow-backstop.json": ("§8 steps 2 and 7: the backstop and loads", head_cases),
    "events-rejected.json": ("§5: malformed events, each breaking one rule", reject_cases),
    "signing.json": ("§6: signed events", signing_cases),
    "invalidations.json": ("§9: invalidations", invalidation_cases),
    "canaries.json": ("§10: canary targets and settings", canary_cases),
    "stored.json": ("§4.1, §4.3, §6, §9: the head, the checkpoint, the invalidation head",
                    stored_cases),
    "legacy.json": ("§13: protocol-1 snapshots and the notice", legacy_cases),
}


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent
    out.mkdir(parents=True, exist_ok=True)
    for name, (about, build) in FILES.items():
        doc = {"format": 1, "about": about, "cases": build()}
        text_ = json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
        (out / name).write_text(text_, encoding="utf-8")
    print(f"wrote {len(FILES)} files to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
