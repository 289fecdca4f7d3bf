"""Canary targets as people write them: ``service=api,instance=api-7*`` or ``10%``."""

from __future__ import annotations

import math

from ..errors import InputError
from ..wire import CanaryTarget

__all__ = ["describe_target", "parse_target"]


def parse_target(text: str) -> CanaryTarget:
    """``service=GLOB``, ``instance=GLOB`` and ``N%`` (comma-separated, each at most once)."""
    service: str | None = None
    instance: str | None = None
    percent: float | None = None
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.endswith("%"):
            try:
                value = float(part[:-1])
            except ValueError:
                raise InputError(f"canary target {part!r}: not a percentage") from None
            if percent is not None or not math.isfinite(value) or not 0 <= value <= 100:
                raise InputError(f"canary target {part!r}: give one percentage from 0 to 100")
            percent = value
            continue
        name, sep, value_text = part.partition("=")
        name = name.strip()
        if not sep or name not in ("service", "instance") or not value_text.strip():
            raise InputError(f"canary target {part!r}: use service=GLOB, instance=GLOB or N%")
        if (service if name == "service" else instance) is not None:
            raise InputError(f"canary target: {name} is given twice")
        if name == "service":
            service = value_text.strip()
        else:
            instance = value_text.strip()
    if service is None and instance is None and percent is None:
        raise InputError("a canary needs a target: service=GLOB, instance=GLOB and/or N%")
    return CanaryTarget(service, instance, percent)


def describe_target(target: CanaryTarget) -> str:
    parts = []
    if target.service is not None:
        parts.append(f"service={target.service}")
    if target.instance is not None:
        parts.append(f"instance={target.instance}")
    if target.percent is not None:
        p = target.percent
        parts.append(f"{int(p) if p == int(p) else p}%")
    return ",".join(parts)
