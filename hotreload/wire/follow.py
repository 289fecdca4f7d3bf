"""What a subscriber does with each event, head and load: the rules of protocol §8 (steps 5-7)
and §9 as pure functions. No I/O, no state: the caller holds its `Position` and acts on the
`Decision`.

Positions: ``epoch`` None and ``version`` -1 before the first load; ``epoch`` None and
``version`` 0 after loading a namespace that does not exist; ``epoch`` None and ``version`` > 0
for a protocol-1 snapshot read during an upgrade (§13); else the epoch and version held.

A subscriber never goes backwards: an older epoch is rejected (events) or held (heads, loads),
a smaller version of its epoch is ignored (events) or held (heads, loads). Nothing here
allocates or loops in proportion to a version number received.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from .digest import EMPTY_CHECKSUM
from .epochs import compare_epochs

__all__ = [
    "DEFAULT_REPLAY_LIMIT",
    "Decision",
    "Position",
    "Verdict",
    "on_event",
    "on_head",
    "on_invalidation",
    "on_load",
]

#: §8 step 6, §12: the longest gap replayed from the log; past it, load.
DEFAULT_REPLAY_LIMIT: Final = 1000


@dataclass(frozen=True, slots=True)
class Position:
    """What a subscriber holds of a namespace (§8)."""

    epoch: str | None
    version: int
    checksum: str = EMPTY_CHECKSUM

    @property
    def loaded(self) -> bool:
        return self.version >= 0

    @property
    def absent(self) -> bool:
        """A loaded namespace that did not exist (version 0, no epoch)."""
        return self.epoch is None and self.version == 0


#: The position before the first load.
UNLOADED: Final = Position(None, -1, EMPTY_CHECKSUM)


class Verdict(enum.Enum):
    """What to do (§8, §9)."""

    APPLY = "apply"        # the next version (or seq): apply it
    IGNORE = "ignore"      # already covered
    REPLAY = "replay"      # read the log from Decision.first to Decision.last, apply in order
    LOAD = "load"          # (re)load the namespace (§8 step 2)
    REJECT = "reject"      # drop the message, report it, keep everything
    HOLD = "hold"          # keep ours and report: the server is behind or on an older epoch
    RECHECK = "recheck"    # server ahead: look again after the in-flight grace (0.5 s)
    ADOPT = "adopt"        # on_load: take the loaded state; on_invalidation: drop everything
                           # and adopt the event's (epoch, seq)
    NOTHING = "nothing"    # all in order


@dataclass(frozen=True, slots=True)
class Decision:
    """A `Verdict`, a stable ``reason`` label, and for REPLAY the versions first..last."""

    verdict: Verdict
    reason: str = ""
    first: int = 0
    last: int = 0


_APPLY: Final = Decision(Verdict.APPLY, "next")
_DUPLICATE: Final = Decision(Verdict.IGNORE, "duplicate")
_NOTHING: Final = Decision(Verdict.NOTHING, "current")


def _versions(n: int, c: str, version: int, checksum: str, reset: bool,
              replay_limit: int) -> Decision:
    """§8 step 6 within one epoch, the subscriber at version ``n`` with checksum ``c``."""
    if version <= n:
        if version == n and checksum != c:
            return Decision(Verdict.LOAD, "checksum")
        return _DUPLICATE
    if version == n + 1:
        return Decision(Verdict.LOAD, "reset") if reset else _APPLY
    if version - n <= replay_limit:
        return Decision(Verdict.REPLAY, "gap", n + 1, version)
    return Decision(Verdict.LOAD, "gap")


def on_event(pos: Position, *, epoch: str, version: int, checksum: str, reset: bool,
             replay_limit: int = DEFAULT_REPLAY_LIMIT) -> Decision:
    """§8 steps 5-6 for a decoded config or canary event (its namespace checked, step 4).

    APPLY: check the changes and the checksum (§5.1) and apply, or on failure reject and load.
    REPLAY: read first..last from the log; apply them if all are there, of this epoch,
    contiguous and valid; else load. LOAD, REJECT, IGNORE: as named.
    """
    if pos.version < 0:
        return Decision(Verdict.LOAD, "unloaded")
    if epoch == pos.epoch:
        return _versions(pos.version, pos.checksum, version, checksum, reset, replay_limit)
    if pos.epoch is None:
        if pos.version == 0 and version == 1:
            # the namespace being created: its first event applies to the empty state
            return Decision(Verdict.LOAD, "reset") if reset else _APPLY
        return Decision(Verdict.LOAD, "epoch")
    if compare_epochs(epoch, pos.epoch) < 0:
        return Decision(Verdict.REJECT, "older-epoch")
    return Decision(Verdict.LOAD, "epoch")


def on_head(pos: Position, head_epoch: str | None, head_version: int, head_checksum: str, *,
            recheck: bool, replay_limit: int = DEFAULT_REPLAY_LIMIT) -> Decision:
    """§8 step 7, the backstop: compare the head with what the subscriber holds.

    ``head_epoch`` None: no head. ``recheck``: this is the second look, after the in-flight
    grace. NOTHING, RECHECK (look again after 0.5 s), REPLAY, LOAD, or HOLD (keep the current
    settings and report: the server is behind, on an older epoch, or lost its data).
    """
    if pos.version < 0:
        return Decision(Verdict.LOAD, "unloaded")
    if head_epoch is None:
        if pos.epoch is None:
            return _NOTHING
        return Decision(Verdict.HOLD, "no-head")
    if pos.epoch is None:
        if pos.version == 0 and not recheck:
            return Decision(Verdict.RECHECK, "created")
        return Decision(Verdict.LOAD, "created" if pos.version == 0 else "epoch")
    if head_epoch == pos.epoch:
        n = pos.version
        if head_version == n:
            return _NOTHING if head_checksum == pos.checksum else Decision(Verdict.LOAD,
                                                                           "checksum")
        if head_version < n:
            return Decision(Verdict.HOLD, "behind")
        if not recheck:
            return Decision(Verdict.RECHECK, "ahead")
        if head_version - n <= replay_limit:
            return Decision(Verdict.REPLAY, "ahead", n + 1, head_version)
        return Decision(Verdict.LOAD, "gap")
    if compare_epochs(head_epoch, pos.epoch) < 0:
        return Decision(Verdict.HOLD, "older-epoch")
    return Decision(Verdict.LOAD, "epoch")


def on_load(pos: Position, loaded_epoch: str | None, loaded_version: int) -> Decision:
    """§8 step 2, the end: ADOPT the loaded state, or HOLD the current one (never backwards).

    ``loaded_epoch`` None with version 0: the namespace does not exist; with a version > 0: a
    protocol-1 snapshot (§13).
    """
    if pos.version < 0:
        return Decision(Verdict.ADOPT, "first")
    if loaded_epoch is None:
        if loaded_version == 0:
            return Decision(Verdict.ADOPT, "absent") if pos.absent else Decision(Verdict.HOLD,
                                                                                 "no-head")
        if pos.epoch is None and loaded_version >= pos.version:
            return Decision(Verdict.ADOPT, "legacy")
        return Decision(Verdict.HOLD, "legacy")
    if pos.epoch is None:
        return Decision(Verdict.ADOPT, "created" if pos.version == 0 else "migrated")
    if loaded_epoch == pos.epoch:
        if loaded_version >= pos.version:
            return Decision(Verdict.ADOPT, "current")
        return Decision(Verdict.HOLD, "behind")
    if compare_epochs(loaded_epoch, pos.epoch) < 0:
        return Decision(Verdict.HOLD, "older-epoch")
    return Decision(Verdict.ADOPT, "epoch")


def on_invalidation(ipos: tuple[str | None, int], epoch: str | None, seq: int, *,
                    replay_limit: int = DEFAULT_REPLAY_LIMIT, head: bool = False) -> Decision:
    """§9: an invalidation event (epoch, seq), or the invalidation head read after a reconnect.

    ``ipos`` is (the invalidation epoch held, the last seq applied): ``(None, -1)`` before the
    invalidation head was read, ``(None, 0)`` after reading that there is none. ``epoch`` None:
    no invalidation head; ``head``: (epoch, seq) come from the head, not an event (a head one
    ahead is a replay of one event). Verdicts: APPLY (drop the event's keys, hold (epoch, seq)),
    IGNORE, REPLAY (first..last from the invalidation log; if any is missing: as ADOPT), ADOPT
    (drop every cache entry, then hold (epoch, seq), or (None, 0) for a missing head), NOTHING.
    """
    held_epoch, s = ipos
    if epoch is None:
        if held_epoch is None and s == 0:
            return _NOTHING
        return Decision(Verdict.ADOPT, "no-head")
    if held_epoch is None:
        if s == 0 and seq == 1 and not head:
            return _APPLY  # the first invalidation ever sent: nothing was missed
        if s == 0 and seq <= replay_limit:
            # The head was absent when read: a history begun since then is all in the log.
            return Decision(Verdict.REPLAY, "gap", 1, seq)
        return Decision(Verdict.ADOPT, "epoch")
    if epoch != held_epoch:
        return Decision(Verdict.ADOPT, "epoch")
    if seq <= s:
        if not head:
            return Decision(Verdict.IGNORE, "duplicate")
        # A head behind us: the server went back (a restored backup) and invalidators go on
        # from there; their next seqs would look like duplicates. Start over from the head.
        return _NOTHING if seq == s else Decision(Verdict.ADOPT, "behind")
    if seq == s + 1 and not head:
        return _APPLY
    if seq - s <= replay_limit:
        return Decision(Verdict.REPLAY, "gap", s + 1, seq)
    return Decision(Verdict.ADOPT, "gap")
