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
    SettingsRejected,
    SignatureError,
    StartTimeout,
)
from .publisher import (
    AsyncPublisher,
    Publisher,
    PublishResult,
    RollbackPlan,
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
from .wire import MISSING, Change, Envelope

__all__ = [
    "MISSING",
    "AsyncPublisher",
    "AsyncSubscriber",
    "AsyncTwoLevelCache",
    "BackendError",
    "CacheHook",
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
    "ProtocolError",
    "PublishResult",
    "Publisher",
    "RecoveryNeeded",
    "Resync",
    "RollbackPlan",
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
