"""Capped exponential backoff with full jitter (no I/O: the caller sleeps)."""

from __future__ import annotations

import random


class Backoff:
    """``next()`` returns ``uniform(0.5, 1) * min(cap, base * 2**n)``; ``reset()`` starts over."""

    def __init__(self, cap: float, *, base: float = 0.1, rng: random.Random | None = None) -> None:
        if cap <= 0 or base <= 0:
            raise ValueError("backoff cap and base must be positive")
        self.cap = cap
        self.base = min(base, cap)
        self.attempts = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** min(self.attempts, 30))
        self.attempts += 1
        return ceiling * self._rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.attempts = 0
