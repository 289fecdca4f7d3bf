"""Publishing settings changes and cache invalidations: `AsyncPublisher` and `Publisher`."""

from .core import AsyncPublisher, PublishResult, RollbackPlan, Snapshot, default_origin
from .salvage import Salvage
from .sync import Publisher

__all__ = ["AsyncPublisher", "PublishResult", "Publisher", "RollbackPlan", "Salvage",
           "Snapshot", "default_origin"]
