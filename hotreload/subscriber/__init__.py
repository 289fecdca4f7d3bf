"""Following a namespace: `AsyncSubscriber`, `Subscriber`, and what they tell the app."""

from .core import AsyncSubscriber
from .events import CacheHook, Invalidation, Resync, SettingsChange
from .frozen import FrozenSettings
from .sync import Subscriber

__all__ = ["AsyncSubscriber", "CacheHook", "FrozenSettings", "Invalidation", "Resync",
           "SettingsChange", "Subscriber"]
