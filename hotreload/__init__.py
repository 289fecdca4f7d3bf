"""hotreload: config hot-reload broadcast and cross-pod cache consistency over Redis."""

from ._frozen import FrozenSettings
from ._version import __version__
from .config import HotReloadConfig, load_config
from .errors import (
    BackendError,
    ConfigError,
    ConflictError,
    DocumentError,
    HistoryError,
    HotReloadError,
    ProtocolError,
    SettingsRejected,
    SignatureError,
    StartTimeout,
)
from .protocol import MISSING, Change, Envelope, Snapshot
from .publisher import AsyncPublisher, Publisher, PublishResult
from .subscriber import (
    AsyncSubscriber,
    CacheHook,
    Invalidation,
    Resync,
    SettingsChange,
    Subscriber,
)

__all__ = [
    "MISSING",
    "AsyncPublisher",
    "AsyncSubscriber",
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
    "Invalidation",
    "ProtocolError",
    "PublishResult",
    "Publisher",
    "Resync",
    "SettingsChange",
    "SettingsRejected",
    "SignatureError",
    "Snapshot",
    "StartTimeout",
    "Subscriber",
    "__version__",
    "load_config",
]
