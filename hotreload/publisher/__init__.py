"""Publishing settings changes and cache invalidations: `AsyncPublisher` and `Publisher`."""

from .core import AsyncPublisher, PublishResult, RollbackPlan, Snapshot, default_origin
from .rollout import Pending, Rollout
from .salvage import Salvage
from .sync import Publisher

__all__ = ["AsyncPublisher", "Pending", "PublishResult", "Publisher", "RollbackPlan", "Rollout",
           "Salvage", "Snapshot", "default_origin"]
