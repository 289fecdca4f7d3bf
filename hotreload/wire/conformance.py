"""Run the conformance vectors (protocol §14) against this implementation.

    python -m hotreload.wire.conformance DIR [-v]

Reads every ``*.json`` file of DIR (``{"format": 1, "cases": [...]}``), runs each case as
conformance/README.md describes, prints one line per failing step and a summary, and exits 1 if
anything failed (2 if DIR holds no vectors).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ..errors import ProtocolError
from .canary import Canary, canary_bucket, canary_from_json, canary_leaves, canary_to_json
from .canary import target_matches as _target_matches
from .digest import Digester
from .events import Envelope, decode_event
from .follow import (
    DEFAULT_REPLAY_LIMIT,
    Decision,
    Position,
    Verdict,
    on_event,
    on_head,
    on_invalidation,
    on_load,
)
from .heads import decode_checkpoint, decode_head, decode_invalidation_head
from .leaves import LeafSet, flatten_texts
from .legacy import decode_legacy_snapshot, legacy_notice

__all__ = ["FORMAT", "CaseResult", "main", "run_case", "run_directory"]

#: The version of the vector format this runner reads.
FORMAT: Final = 1


@dataclass
class CaseResult:
    """The outcome of one case: its name and one message per failed check."""

    file: str
    name: str
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _key(case: Mapping[str, Any]) -> bytes | None:
    key = case.get("key")
    return None if key is None else str(key).encode()


def _message(step: Mapping[str, Any]) -> bytes:
    """A step's message bytes: ``event`` (text, sent as UTF-8) or ``event_hex``."""
    if "event_hex" in step:
        return bytes.fromhex(step["event_hex"])
    return str(step["event"]).encode()


# --------------------------------------------------------------------------- follow


@dataclass
class _Follower:
    """The state a subscriber holds in a ``follow`` case (§8)."""

    namespace: str
    key: bytes | None
    max_bytes: int
    replay_limit: int
    digester: Digester
    epoch: str | None = None
    version: int = -1
    checksum: str = "0" * 64
    leaves: LeafSet = field(default_factory=LeafSet)
    canary: Canary | None = None

    def position(self) -> Position:
        return Position(self.epoch, self.version, self.checksum)

    def adopt(self, server: Mapping[str, Any]) -> None:
        self.epoch = server.get("epoch")
        self.version = int(server["version"])
        self.leaves = LeafSet(server.get("leaves") or {})
        self.checksum = self.digester.checksum_of(self.leaves)
        raw = server.get("canary")
        self.canary = None if raw is None else canary_from_json(raw)

    def snapshot(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "version": self.version, "checksum": self.checksum,
                "leaves": dict(self.leaves),
                "canary": None if self.canary is None else canary_to_json(self.canary)}

    def decode(self, message: bytes) -> Envelope:
        return decode_event(message, key=self.key, max_bytes=self.max_bytes,
                            namespace=self.namespace)

    def apply(self, env: Envelope) -> None:
        """Apply the next version (§8 step 6): checksum, then old texts and prefixes."""
        checksum = self.digester.advance(self.checksum, env.changes)
        if checksum != env.checksum:
            raise ProtocolError(f"version {env.version}: checksum mismatch", reason="checksum")
        self.leaves.apply(env.changes)
        self.epoch, self.version, self.checksum = env.epoch, env.version, checksum
        if env.kind == "canary" or env.canary is None:
            self.canary = env.canary if isinstance(env.canary, Canary) else None

    def replay(self, log: Sequence[str], first: int, last: int) -> bool:
        """Apply log entries first..last (§8 step 6); False if one is missing or bad."""
        if self.version != first - 1:
            return False
        for message in log:
            try:
                env = self.decode(message.encode())
                if env.kind == "invalidate" or env.epoch != self.epoch:
                    return False
                if env.version != self.version + 1:
                    return False
                self.apply(env)
            except ProtocolError:
                return False
        return self.version == last

    def load(self, step: Mapping[str, Any]) -> None:
        server = step.get("server")
        if server is None:
            raise ValueError("the step loads but gives no 'server' state")
        decision = on_load(self.position(), server.get("epoch"), int(server["version"]))
        if decision.verdict is Verdict.ADOPT:
            self.adopt(server)

    def act(self, decision: Decision, step: Mapping[str, Any]) -> tuple[str, str]:
        """Carry out a REPLAY / LOAD decision; the result label and reason of the step."""
        if decision.verdict is Verdict.REPLAY:
            if not self.replay(step.get("log") or [], decision.first, decision.last):
                self.load(step)
        elif decision.verdict is Verdict.LOAD:
            self.load(step)
        return decision.verdict.value, decision.reason


def _follow_step(f: _Follower, step: Mapping[str, Any]) -> tuple[str, str]:
    if "event" in step or "event_hex" in step:
        try:
            env = f.decode(_message(step))
        except ProtocolError as exc:
            return "reject", exc.reason
        if env.kind == "invalidate":
            return "reject", "kind"
        decision = on_event(f.position(), epoch=env.epoch, version=env.version,
                            checksum=env.checksum, reset=env.reset,
                            replay_limit=f.replay_limit)
        if decision.verdict is Verdict.APPLY:
            try:
                f.apply(env)
            except ProtocolError as exc:
                f.load(step)
                return "load", exc.reason
            return "apply", ""
        return f.act(decision, step)
    if "head" in step:
        head = step["head"]
        if head is None:
            decision = on_head(f.position(), None, 0, "0" * 64, recheck=bool(step.get("recheck")),
                               replay_limit=f.replay_limit)
        else:
            decision = on_head(f.position(), head["epoch"], int(head["version"]),
                               head["checksum"], recheck=bool(step.get("recheck")),
                               replay_limit=f.replay_limit)
        return f.act(decision, step)
    if "server" in step:
        server = step["server"]
        decision = on_load(f.position(), server.get("epoch"), int(server["version"]))
        if decision.verdict is Verdict.ADOPT:
            f.adopt(server)
        return decision.verdict.value, decision.reason
    raise ValueError("a step needs 'event', 'head' or 'server'")


def _run_follow(case: Mapping[str, Any], fail: Callable[[str], None]) -> None:
    key = _key(case)
    f = _Follower(case.get("namespace", "app"), key,
                  int(case.get("max_message_bytes", 1024 * 1024)),
                  int(case.get("replay_limit", DEFAULT_REPLAY_LIMIT)), Digester(key))
    start = case["start"]
    if int(start["version"]) >= 0:
        f.adopt(start)
    for i, step in enumerate(case["steps"], 1):
        result, reason = _follow_step(f, step)
        expect = step["expect"]
        if result != expect["result"] or (result in ("reject", "load")
                                          and reason != expect.get("reason")):
            fail(f"step {i}: got {result} ({reason}), want {expect['result']} "
                 f"({expect.get('reason', '')})")
        want = step.get("state")
        if want is not None:
            got = f.snapshot()
            for name in ("epoch", "version", "checksum", "leaves", "canary"):
                if name in want and got[name] != want[name]:
                    fail(f"step {i}: {name} is {got[name]!r}, want {want[name]!r}")


# --------------------------------------------------------------------------- invalidations


@dataclass
class _Drops:
    keys: set[str] = field(default_factory=set)
    prefixes: set[str] = field(default_factory=set)
    all: bool = False

    def add(self, env: Envelope) -> None:
        self.keys.update(env.keys)
        self.prefixes.update(env.prefixes)
        self.all = self.all or env.all

    def as_json(self) -> dict[str, Any]:
        if self.all:
            return {"keys": [], "prefixes": [], "all": True}
        return {"keys": sorted(self.keys), "prefixes": sorted(self.prefixes), "all": False}


def _run_invalidate(case: Mapping[str, Any], fail: Callable[[str], None]) -> None:
    key = _key(case)
    namespace = case.get("namespace", "app")
    limit = int(case.get("replay_limit", DEFAULT_REPLAY_LIMIT))
    held: tuple[str | None, int] = (case["start"].get("epoch"), int(case["start"]["seq"]))

    def decode(message: bytes) -> Envelope:
        return decode_event(message, key=key, namespace=namespace)

    def replay(log: Sequence[str], epoch: str | None, first: int, last: int,
               drops: _Drops) -> bool:
        expected = first
        for message in log:
            try:
                env = decode(message.encode())
            except ProtocolError:
                return False
            if env.kind != "invalidate" or env.epoch != epoch or env.seq != expected:
                return False
            drops.add(env)
            expected += 1
        return expected == last + 1

    for i, step in enumerate(case["steps"], 1):
        drops = _Drops()
        reason = ""
        if "event" in step or "event_hex" in step:
            try:
                env = decode(_message(step))
                if env.kind != "invalidate":
                    raise ProtocolError("not an invalidation", reason="kind")
            except ProtocolError as exc:
                result, reason = "reject", exc.reason
            else:
                decision = on_invalidation(held, env.epoch, env.seq, replay_limit=limit)
                result = decision.verdict.value
                if decision.verdict is Verdict.APPLY:
                    drops.add(env)
                    held = (env.epoch, env.seq)
                elif decision.verdict is Verdict.ADOPT:
                    drops.all = True
                    held = (env.epoch, env.seq)
                elif decision.verdict is Verdict.REPLAY:
                    if replay(step.get("log") or [], env.epoch, decision.first, decision.last,
                              drops):
                        held = (env.epoch, env.seq)
                    else:
                        drops.all = True
                        held = (env.epoch, env.seq)
        else:
            head = step["head"]
            epoch, seq = (None, 0) if head is None else (head["epoch"], int(head["seq"]))
            decision = on_invalidation(held, epoch, seq, replay_limit=limit, head=True)
            result = decision.verdict.value
            if decision.verdict is Verdict.ADOPT:
                drops.all = True
                held = (epoch, seq)
            elif decision.verdict is Verdict.REPLAY:
                if not replay(step.get("log") or [], epoch, decision.first, decision.last,
                              drops):
                    drops.all = True
                held = (epoch, seq)
        expect = step["expect"]
        if result != expect["result"] or (result == "reject" and reason != expect.get("reason")):
            fail(f"step {i}: got {result} ({reason}), want {expect['result']} "
                 f"({expect.get('reason', '')})")
        want_state = step.get("state")
        if want_state is not None and [held[0], held[1]] != [want_state["epoch"],
                                                             want_state["seq"]]:
            fail(f"step {i}: holds {held}, want {want_state}")
        want_drop = step.get("drop")
        if want_drop is not None and drops.as_json() != want_drop:
            fail(f"step {i}: drops {drops.as_json()}, want {want_drop}")


# --------------------------------------------------------------------------- the others


def _run_checksum(case: Mapping[str, Any], fail: Callable[[str], None]) -> None:
    digester = Digester(_key(case))
    leaves = case["leaves"]
    got = digester.checksum_of(leaves)
    if got != case["checksum"]:
        fail(f"checksum {got}, want {case['checksum']}")
    for name, want in (case.get("digests") or {}).items():
        d = f"{digester.leaf(name, leaves[name]):064x}"
        if d != want:
            fail(f"digest of {name!r} is {d}, want {want}")
    if "document" in case and flatten_texts(case["document"]) != leaves:
        fail("the document does not flatten to the leaves")


def _run_canary(case: Mapping[str, Any], fail: Callable[[str], None]) -> None:
    canary = canary_from_json(case["canary"])
    for inst in case["instances"]:
        bucket = canary_bucket(canary.id, inst["instance"])
        if "bucket" in inst and bucket != inst["bucket"]:
            fail(f"{inst['instance']}: bucket {bucket}, want {inst['bucket']}")
        got = _target_matches(canary, service=inst.get("service", ""), instance=inst["instance"])
        if got != inst["matches"]:
            fail(f"{inst.get('service', '')}/{inst['instance']}: matches {got}, "
                 f"want {inst['matches']}")
    if "leaves" in case:
        got_leaves = canary_leaves(case["leaves"], canary)
        if got_leaves != case["effective"]:
            fail(f"effective leaves {got_leaves}, want {case['effective']}")


def _decoded(case: Mapping[str, Any], fail: Callable[[str], None],
             decode: Callable[[], Any], shape: Callable[[Any], dict[str, Any]]) -> None:
    expect = case["expect"]
    try:
        value = decode()
    except ProtocolError as exc:
        if expect["result"] != "reject" or exc.reason != expect.get("reason"):
            fail(f"rejected ({exc.reason}: {exc}), want {expect}")
        return
    if value is None:
        if expect["result"] != "absent":
            fail(f"absent, want {expect}")
        return
    if expect["result"] != "ok":
        fail(f"accepted, want {expect}")
        return
    got = shape(value)
    for name, want in expect.items():
        if name != "result" and got.get(name) != want:
            fail(f"{name} is {got.get(name)!r}, want {want!r}")


def _run_head(case: Mapping[str, Any], fail: Callable[[str], None]) -> None:
    ns = case.get("namespace", "app")
    _decoded(case, fail, lambda: decode_head(ns, case["fields"], key=_key(case)),
             lambda h: {"epoch": h.epoch, "version": h.version, "checksum": h.checksum,
                        "count": h.count, "updated_at": h.updated_at,
                        "canary": None if h.canary is None else canary_to_json(h.canary)})


def _run_checkpoint(case: Mapping[str, Any], fail: Callable[[str], None]) -> None:
    ns = case.get("namespace", "app")
    _decoded(case, fail, lambda: decode_checkpoint(ns, case["fields"], key=_key(case)),
             lambda c: {"epoch": c.epoch, "version": c.version, "checksum": c.checksum,
                        "count": c.count, "settings": c.settings})


def _run_invalidation_head(case: Mapping[str, Any], fail: Callable[[str], None]) -> None:
    _decoded(case, fail, lambda: decode_invalidation_head(case["fields"]),
             lambda h: {"epoch": h.epoch, "seq": h.seq})


def _run_legacy(case: Mapping[str, Any], fail: Callable[[str], None]) -> None:
    ns = case.get("namespace", "app")
    if "notice" in case:
        if legacy_notice(ns).decode() != case["notice"]:
            fail(f"notice {legacy_notice(ns)!r}, want {case['notice']!r}")
        return
    _decoded(case, fail, lambda: decode_legacy_snapshot(ns, case["fields"], key=_key(case)),
             lambda s: {"epoch": s.epoch, "version": s.version, "settings": s.settings})


_RUNNERS: Final[Mapping[str, Callable[[Mapping[str, Any], Callable[[str], None]], None]]] = {
    "checksum": _run_checksum,
    "follow": _run_follow,
    "invalidate": _run_invalidate,
    "canary": _run_canary,
    "head": _run_head,
    "checkpoint": _run_checkpoint,
    "invalidation-head": _run_invalidation_head,
    "legacy": _run_legacy,
}


def run_case(case: Mapping[str, Any], file: str = "") -> CaseResult:
    """Run one case; a malformed case is a failure, not an exception."""
    result = CaseResult(file, str(case.get("name", "?")))
    runner = _RUNNERS.get(case.get("type", ""))
    if runner is None:
        result.failures.append(f"unknown case type {case.get('type')!r}")
        return result
    try:
        runner(case, result.failures.append)
    except (KeyError, TypeError, ValueError, ProtocolError) as exc:
        result.failures.append(f"malformed case or unexpected error: {exc!r}")
    return result


def run_directory(directory: Path) -> list[CaseResult]:
    """Run every case of every ``*.json`` file of ``directory``, files in name order."""
    results: list[CaseResult] = []
    for path in sorted(directory.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") != FORMAT:
            results.append(CaseResult(path.name, "*", [f"unknown format {doc.get('format')!r}"]))
            continue
        results.extend(run_case(case, path.name) for case in doc["cases"])
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hotreload.wire.conformance",
        description="Run the protocol-2 conformance vectors (conformance/README.md).")
    parser.add_argument("directory", type=Path, help="the directory of *.json vector files")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every case")
    args = parser.parse_args(argv)
    results = run_directory(args.directory)
    if not results:
        print(f"no vectors in {args.directory}", file=sys.stderr)
        return 2
    failed = [r for r in results if not r.ok]
    for r in results:
        if args.verbose or not r.ok:
            print(f"{'ok  ' if r.ok else 'FAIL'} {r.file}: {r.name}")
        for failure in r.failures:
            print(f"       {failure}")
    print(f"{len(results) - len(failed)} of {len(results)} cases passed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
