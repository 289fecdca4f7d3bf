"""hotreload: config hot-reload broadcast and cross-pod cache consistency over Redis."""

from ._version import __version__
from .cache import AsyncTwoLevelCache, JsonSerializer, L1Cache, Serializer, TwoLevelCache
from .config import HotReloadConfig, load_config
from .errors import (
    BackendError,
    ConfigError,
    ConflictError,
    DocumentError,
    HistoryError,
    HotReloadError,
    InputError,
    ProtocolError,
    RecoveryNeeded,
    RolloutIncomplete,
    SettingsRejected,
    SignatureError,
    StartTimeout,
)
from .publisher import (
    AsyncPublisher,
    Publisher,
    PublishResult,
    RollbackPlan,
    Rollout,
    Salvage,
    Snapshot,
)
from .subscriber import (
    AsyncSubscriber,
    CacheHook,
    FrozenSettings,
    Invalidation,
    Resync,
    SettingsChange,
    Subscriber,
)
from .wire import MISSING, CanaryTarget, Change, Envelope
from .wire.presence import PresenceRecord

__all__ = [
    "MISSING",
    "AsyncPublisher",
    "AsyncSubscriber",
    "AsyncTwoLevelCache",
    "BackendError",
    "CacheHook",
    "CanaryTarget",
    "Change",
    "ConfigError",
    "ConflictError",
    "DocumentError",
    "Envelope",
    "FrozenSettings",
    "HistoryError",
    "HotReloadConfig",
    "HotReloadError",
    "InputError",
    "Invalidation",
    "JsonSerializer",
    "L1Cache",
    "PresenceRecord",
    "ProtocolError",
    "PublishResult",
    "Publisher",
    "RecoveryNeeded",
    "Resync",
    "RollbackPlan",
    "Rollout",
    "RolloutIncomplete",
    "Salvage",
    "Serializer",
    "SettingsChange",
    "SettingsRejected",
    "SignatureError",
    "Snapshot",
    "StartTimeout",
    "Subscriber",
    "TwoLevelCache",
    "__version__",
    "load_config",
]
