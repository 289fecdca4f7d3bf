"""Configuration: ``config.yaml`` + ``HOTRELOAD_*`` environment variables, validated by pydantic.

Precedence, highest first: arguments given in code, environment variables
(``HOTRELOAD_REDIS__ADDR``: prefix ``HOTRELOAD_``, ``__`` between nested names), the YAML file,
the defaults below. The file is ``-c/--config``, else ``$HOTRELOAD_CONFIG``, else
``./config.yaml`` (which may be absent).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import quote, unquote

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ._parsers import load_yaml
from .errors import ConfigError, ProtocolError, validation_problems
from .wire import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_PREFIX, check_name

DEFAULT_CONFIG_PATH = "config.yaml"
CONFIG_ENV = "HOTRELOAD_CONFIG"
ENV_PREFIX = "HOTRELOAD_"


def _name(value: str, what: str) -> str:
    """`check_name` for validators: pydantic wants a ValueError."""
    try:
        return check_name(value, what)
    except ProtocolError as exc:
        raise ValueError(str(exc)) from None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be host:port, e.g. localhost:6379")
    return value


def _check_nodes(value: list[str]) -> list[str]:
    for node in value:
        try:
            _check_host_port(node)
        except ValueError:
            raise ValueError(f"node {node!r} must be host:port, e.g. redis-0:6379") from None
    return value


#: URL schemes of a Redis Cluster (``redis+cluster://host:port,host:port/``).
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


class ClusterSettings(_Section):
    """Redis Cluster: a few of its nodes to discover the rest from (docs/scaling.md)."""

    #: ``host:port`` of a few nodes of the cluster; the others are discovered from them.
    nodes: list[str] = Field(min_length=1)
    #: Subscriptions and reads go to the replicas of a namespace's shard (its primary when it
    #: has none); every write, and every read that must be current, goes to the primary.
    read_from_replicas: bool = True

    @field_validator("nodes")
    @classmethod
    def _check_nodes(cls, value: list[str]) -> list[str]:
        return _check_nodes(value)


class SentinelSettings(_Section):
    """Redis Sentinel: the monitored master's name and the sentinels' addresses. The master's
    own credentials are ``redis.username`` / ``redis.password``."""

    #: The name the sentinels monitor the master under (``sentinel monitor <name> ...``).
    master: str = Field(min_length=1)
    #: ``host:port`` of the sentinels.
    nodes: list[str] = Field(min_length=1)
    #: ACL user name on the sentinels (when they require one).
    sentinel_username: str | None = None
    #: Password of the sentinels (a secret: never logged).
    sentinel_password: SecretStr | None = None

    @field_validator("nodes")
    @classmethod
    def _check_nodes(cls, value: list[str]) -> list[str]:
        return _check_nodes(value)


class RedisSettings(_Section):
    """How to reach Redis: one server (``url``, else ``addr``/``password``/``db``), a Redis
    Cluster (``cluster``, or a ``redis+cluster://`` URL) or a master behind Sentinel
    (``sentinel``)."""

    #: ``redis://[user:password@]host:port/db``, ``rediss://`` (TLS) or ``unix://``; wins over the
    #: fields below. A secret: never logged.
    url: SecretStr | None = None
    #: ``host:port`` of Redis (when ``url`` is not given).
    addr: str = "localhost:6379"
    #: ACL user name.
    username: str | None = None
    #: ACL password (a secret: never logged).
    password: SecretStr = SecretStr("")
    #: Database number (Pub/Sub ignores it: use ``prefix`` to separate tenants).
    db: int = Field(0, ge=0)
    #: A Redis Cluster instead of one server (docs/scaling.md).
    cluster: ClusterSettings | None = None
    #: A master behind Redis Sentinel instead of one server (docs/scaling.md).
    sentinel: SentinelSettings | None = None
    #: Maximum connections per client.
    pool_size: int = Field(10, ge=1)
    #: Accepted for compatibility; connections are opened lazily, none kept idle.
    min_idle_conns: int = Field(0, ge=0)
    #: RESP version, 2 or 3.
    protocol: Literal[2, 3] = 3
    #: Connect with TLS (``rediss://``).
    tls: bool = False
    #: CA bundle to verify the server with (TLS).
    tls_ca_file: str | None = None
    #: Client certificate (TLS).
    tls_cert_file: str | None = None
    #: Client certificate's key (TLS).
    tls_key_file: str | None = None
    #: Seconds to connect.
    connect_timeout: float = Field(2.0, gt=0)
    #: Seconds a command may take (not the wait on Pub/Sub).
    socket_timeout: float = Field(5.0, gt=0)
    #: Kernel keepalive: seconds of silence before the first probe.
    tcp_keepalive_idle: int = Field(10, ge=1)
    #: Kernel keepalive: seconds between probes.
    tcp_keepalive_interval: int = Field(5, ge=1)
    #: Kernel keepalive: unanswered probes that fail the socket.
    tcp_keepalive_count: int = Field(3, ge=1)
    #: ``TCP_USER_TIMEOUT``: unacknowledged data fails the socket after this (ms; 0: the OS
    #: default).
    tcp_user_timeout_ms: int = Field(15000, ge=0)

    @field_validator("addr")
    @classmethod
    def _check_addr(cls, value: str) -> str:
        return _check_host_port(value)

    @model_validator(mode="after")
    def _check_tls(self) -> RedisSettings:
        if self.tls and self.url is not None and self.url.get_secret_value().startswith(
                ("redis://", "redis+cluster://")):
            raise ValueError("tls is true but url starts with redis:// (use rediss://)")
        return self

    @model_validator(mode="after")
    def _check_mode(self) -> RedisSettings:
        url_cluster = self.url is not None and _scheme(self.url.get_secret_value()) in (
            CLUSTER_SCHEMES)
        given = [name for name, on in (("url", self.url is not None and not url_cluster),
                                       ("addr", "addr" in self.model_fields_set),
                                       ("cluster", self.cluster is not None or url_cluster),
                                       ("sentinel", self.sentinel is not None)) if on]
        if len(given) > 1 and ("cluster" in given or "sentinel" in given):
            raise ValueError(f"{' and '.join(given)} exclude each other: give one of them")
        if self.db and (self.cluster is not None or url_cluster):
            raise ValueError("a Redis Cluster has only database 0 (db must be 0)")
        if url_cluster and self.url is not None:
            parse_cluster_url(self.url.get_secret_value())  # a bad one fails here
        return self

    @property
    def mode(self) -> Literal["single", "cluster", "sentinel"]:
        """One server, a Redis Cluster, or a master behind Sentinel."""
        if self.sentinel is not None:
            return "sentinel"
        if self.cluster is not None or (self.url is not None and _scheme(
                self.url.get_secret_value()) in CLUSTER_SCHEMES):
            return "cluster"
        return "single"

    def cluster_settings(self) -> tuple[ClusterSettings, str | None, str, bool]:
        """Cluster mode: the cluster block (or what the ``redis+cluster://`` URL says), the
        username, the password and whether to use TLS."""
        if self.cluster is not None:
            return self.cluster, self.username, self.password.get_secret_value(), self.tls
        if self.url is None:
            raise ValueError("not a cluster configuration")
        return parse_cluster_url(self.url.get_secret_value())

    def effective_url(self) -> str:
        """The URL to connect to (password included: never log it; see `display_url`)."""
        if self.url is not None:
            return self.url.get_secret_value()
        scheme = "rediss" if self.tls else "redis"
        auth = _auth(self.username, self.password.get_secret_value())
        if self.cluster is not None:
            return f"{scheme}+cluster://{auth}{','.join(self.cluster.nodes)}/"
        if self.sentinel is not None:
            return (f"{scheme}+sentinel://{auth}{','.join(self.sentinel.nodes)}/"
                    f"{self.sentinel.master}/{self.db}")
        return f"{scheme}://{auth}{self.addr}/{self.db}"

    def display_url(self) -> str:
        """The URL with any password replaced by ``***``."""
        return redact_url(self.effective_url())


def _scheme(url: str) -> str:
    return url.partition("://")[0].lower() if "://" in url else ""


def _auth(username: str | None, password: str) -> str:
    if username or password:
        return f"{quote(username or '', safe='')}:{quote(password, safe='')}@"
    return ""


def parse_cluster_url(url: str) -> tuple[ClusterSettings, str | None, str, bool]:
    """``redis+cluster://[user:password@]host:port[,host:port...][/][?read_from_replicas=
    false]`` (``rediss+cluster://`` for TLS): the cluster settings, username, password and TLS.
    Errors never quote the URL (it may hold a password)."""
    scheme, _, rest = url.partition("://")
    rest, _, query = rest.partition("?")
    at = rest.rfind("@")
    userinfo, hosts = (rest[:at], rest[at + 1:]) if at >= 0 else ("", rest)
    user, _, password = userinfo.partition(":")
    hosts = hosts.rstrip("/")
    if "/" in hosts:
        raise ValueError("a redis+cluster URL has no database or path (only database 0)")
    read_from_replicas = True
    for item in filter(None, query.split("&")):
        name, _, value = item.partition("=")
        if name != "read_from_replicas" or value.lower() not in ("true", "false", "1", "0"):
            raise ValueError("a redis+cluster URL takes one option: read_from_replicas=true|false")
        read_from_replicas = value.lower() in ("true", "1")
    try:
        cluster = ClusterSettings(nodes=hosts.split(","), read_from_replicas=read_from_replicas)
    except ValidationError as exc:
        raise ValueError("the redis+cluster URL needs host:port[,host:port...]: "
                         + exc.errors(include_url=False)[0]["msg"].removeprefix(
                             "Value error, ")) from None
    return (cluster, unquote(user) or None, unquote(password),
            scheme.lower() == "rediss+cluster")


class SubscriberSettings(_Section):
    """Liveness and resync tuning of subscribers."""

    #: PING the pubsub link after this much silence (seconds).
    heartbeat_interval: float = Field(1.0, gt=0)
    #: Reconnect (and resync) when a PING gets no reply within this many seconds.
    heartbeat_timeout: float = Field(3.0, gt=0)
    #: Compare the server's version with ours this often (seconds), as a backstop; the
    #: instance's presence record is written in the same round trip.
    version_check_interval: float = Field(5.0, gt=0)
    #: Cap (seconds) of the exponential backoff between reconnect attempts.
    reconnect_backoff_max: float = Field(5.0, gt=0)
    #: The deadline of each server call a subscriber makes besides its subscription (loads,
    #: replays, the backstop): past it the call is abandoned and retried.
    command_timeout: float = Field(2.0, gt=0)
    #: The longest gap replayed from the log (protocol §8 step 6); past it, a full load.
    replay_limit: int = Field(1000, ge=1, le=100_000)
    #: The service name this process reports in its presence record (canary targets use it).
    service: str = ""
    #: Keep the last applied settings in this local file, and start from it when Redis is
    #: unreachable at start (docs/subscriber.md, "Last known good at start").
    cache_file: str | None = None


class PublisherSettings(_Section):
    """Tuning of publishers."""

    #: Rewrite the checkpoint (protocol §4.3) when it is this many versions behind...
    checkpoint_every: int = Field(512, ge=1)
    #: ... or this many seconds old while behind at all.
    checkpoint_interval: float = Field(2.0, gt=0)


class SecuritySettings(_Section):
    """Message signing and limits."""

    #: Sign every event (HMAC-SHA256); subscribers with the key reject unsigned or forged ones.
    hmac_key: SecretStr | None = None
    #: Larger messages are rejected, and a publish that would produce one fails.
    max_message_bytes: int = Field(DEFAULT_MAX_MESSAGE_BYTES, ge=1024)

    def key_bytes(self) -> bytes | None:
        if self.hmac_key is None or not self.hmac_key.get_secret_value():
            return None
        return self.hmac_key.get_secret_value().encode()


_PG_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,47}$")


def check_pg_name(value: str, what: str) -> str:
    """A table or channel name: 1-48 of ``A-Z a-z 0-9 _ . -``, not starting with a digit."""
    if not _PG_NAME_RE.match(value):
        raise ValueError(
            f"invalid {what} {value!r}: use 1-48 characters of A-Z a-z 0-9 _ . -, "
            "starting with a letter or _"
        )
    return value


class InvalidationChannel(_Section):
    """A NOTIFY channel whose payloads become ``invalidate`` events.

    ``namespace`` is where payloads without a ``namespace`` field go (default: the config's
    ``namespace``); after a reconnect it receives an "invalidate everything".
    """

    #: The NOTIFY channel.
    channel: str
    #: Where payloads without a namespace go (default: the config's ``namespace``).
    namespace: str | None = None

    @field_validator("channel")
    @classmethod
    def _check_channel(cls, value: str) -> str:
        return check_pg_name(value, "channel")

    @field_validator("namespace")
    @classmethod
    def _check_ns(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_name(value, "namespace")
            except ProtocolError as exc:
                raise ValueError(str(exc)) from None
        return value


class PostgresSettings(_Section):
    """The PostgreSQL source and leader election (daemon only)."""

    #: Where the settings table is (a secret: never logged).
    dsn: SecretStr = SecretStr("postgresql://localhost:5432/postgres")
    #: Merged into the DSN; overrides a password in it.
    password: SecretStr | None = None
    #: Invalidation channels: names, or ``{channel, namespace}`` (docs/postgres.md).
    channels: list[str | InvalidationChannel] = Field(default_factory=list)
    #: The settings table (``hotreload db install`` creates it).
    settings_table: str = "hotreload_settings"
    #: The channel its trigger notifies.
    notify_channel: str = "hotreload_settings"
    #: The channel of the listener's self-NOTIFY heartbeat.
    heartbeat_channel: str = "hotreload_heartbeat"
    #: Seconds of silence before a self-NOTIFY heartbeat.
    heartbeat_interval: float = Field(2.0, gt=0)
    #: Seconds to get it back (and the limit of any heartbeat or lock query).
    heartbeat_timeout: float = Field(6.0, gt=0)
    #: Seconds to connect (libpq ``connect_timeout``).
    connect_timeout: int = Field(5, ge=1)
    #: libpq ``keepalives_idle`` (seconds).
    keepalives_idle: int = Field(10, ge=1)
    #: libpq ``keepalives_interval`` (seconds).
    keepalives_interval: int = Field(5, ge=1)
    #: libpq ``keepalives_count``.
    keepalives_count: int = Field(3, ge=1)
    #: libpq ``tcp_user_timeout`` (ms; 0: the OS default).
    tcp_user_timeout_ms: int = Field(15000, ge=0)
    #: Cap (seconds) of the exponential reconnect backoff.
    reconnect_backoff_max: float = Field(5.0, gt=0)
    #: Seconds a settings read may take before the link is deemed dead.
    query_timeout: float = Field(10.0, gt=0)
    #: The advisory lock key all daemons of a cluster share (one per cluster).
    leader_lock_key: int = Field(0x686F7472, ge=-(2**63), lt=2**63)
    #: Seconds between a standby's lock attempts.
    leader_poll_interval: float = Field(0.5, gt=0)
    #: Seconds between the leader's checks of its session.
    leader_check_interval: float = Field(1.0, gt=0)

    @field_validator("settings_table", "notify_channel", "heartbeat_channel")
    @classmethod
    def _check_pg_names(cls, value: str) -> str:
        return check_pg_name(value, "name")

    @field_validator("channels")
    @classmethod
    def _check_channels(
        cls, value: list[str | InvalidationChannel]
    ) -> list[str | InvalidationChannel]:
        for item in value:
            if isinstance(item, str):
                check_pg_name(item, "channel")
        return value

    @model_validator(mode="after")
    def _distinct_channels(self) -> PostgresSettings:
        names = [c.channel for c in self.invalidation_channels("default")]
        names += [self.notify_channel, self.heartbeat_channel]
        if len(set(names)) != len(names):
            raise ValueError("notify_channel, heartbeat_channel and channels must all differ")
        return self

    def invalidation_channels(self, default_namespace: str) -> list[InvalidationChannel]:
        """``channels`` with every entry as an `InvalidationChannel` with its namespace set."""
        out = []
        for item in self.channels:
            if isinstance(item, str):
                item = InvalidationChannel(channel=item)
            out.append(item.model_copy(update={"namespace": item.namespace or default_namespace}))
        return out

    def display_dsn(self) -> str:
        return redact_url(self.dsn.get_secret_value())


class FileSource(_Section):
    """One watched settings file published to one namespace."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    #: The settings file (YAML, JSON or TOML; watched through its directory).
    path: str
    #: The namespace it feeds (one file per namespace).
    namespace: str
    #: ``module:Model``: a pydantic model every version of the file must pass.
    schema_: str | None = Field(None, alias="schema")
    #: ``yaml``, ``json`` or ``toml`` (default: from the extension).
    format: Literal["yaml", "json", "toml"] | None = None

    @field_validator("namespace")
    @classmethod
    def _check_ns(cls, value: str) -> str:
        return _name(value, "namespace")


class SourcesSettings(_Section):
    """The settings files the daemon watches (daemon only)."""

    #: Watched settings files, one namespace each (docs/file-source.md).
    files: list[FileSource] = Field(default_factory=list)


HTTP_OFF: Final = "off"


def http_address(value: str | None) -> str | None:
    """``daemon.http`` and ``daemon --http``: ``host:port`` (``[::1]:9464`` for IPv6, port 0 picks
    a free one), or ``off`` / null for no HTTP server (None). One rule for config, env and CLI."""
    if value is None or value.strip().lower() == HTTP_OFF:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host.strip("[]") or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError("must be host:port, e.g. 127.0.0.1:9464, or off")
    return value


class ConsoleSettings(_Section):
    """The operator console and its JSON API on the daemon's HTTP listener (docs/daemon.md)."""

    #: None (default): on when ``daemon.http`` is a loopback address, off otherwise.
    enabled: bool | None = None
    #: When set, ``/`` and ``/api/`` require ``Authorization: Bearer <token>`` (or the token as
    #: the password of HTTP Basic authentication, for browsers).
    token: SecretStr | None = None
    #: Namespaces shown besides those the daemon's sources feed.
    namespaces: list[str] = Field(default_factory=list)
    #: Glob patterns of dotted keys whose values never leave the daemon (case-insensitive).
    secret_keys: list[str] = Field(default_factory=list)
    #: Seconds between two reads of the heads and presence records while someone watches.
    poll_interval: float = Field(0.5, gt=0, le=60)

    @field_validator("token")
    @classmethod
    def _no_empty_token(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None

    @field_validator("namespaces")
    @classmethod
    def _check_namespaces(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(_name(ns, "namespace") for ns in value))


class DaemonSettings(_Section):
    """The publisher daemon."""

    #: ``host:port`` of ``/healthz``, ``/readyz`` and ``/metrics``; ``off`` disables it.
    http: str | None = "127.0.0.1:9464"
    #: Seconds between full re-reads of every source.
    reconcile_interval: float = Field(30.0, gt=0)
    #: watchfiles ``step`` of the file source (ms).
    watch_step_ms: int = Field(1, ge=1)
    #: watchfiles ``debounce`` of the file source (ms).
    watch_debounce_ms: int = Field(50, ge=1)
    #: Cap (seconds) of the backoff between Redis retries (also source restarts and lock retries).
    redis_backoff_max: float = Field(5.0, gt=0)
    #: ``text`` or ``json`` log lines (when ``--log-format`` is not given).
    log_format: Literal["text", "json"] = "text"
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)

    @field_validator("http", mode="before")
    @classmethod
    def _unquoted_off(cls, value: Any) -> Any:
        return HTTP_OFF if value is False else value  # YAML reads an unquoted off as false

    @field_validator("http")
    @classmethod
    def _check_http(cls, value: str | None) -> str | None:
        return http_address(value)


_YAML_DATA: ContextVar[dict[str, Any] | None] = ContextVar("hotreload_yaml_data", default=None)


class _YamlData(PydanticBaseSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # pragma: no cover - __call__ does the work

    def __call__(self) -> dict[str, Any]:
        return dict(_YAML_DATA.get() or {})


class HotReloadConfig(BaseSettings):
    """The whole configuration (``config.yaml``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    redis: RedisSettings = Field(default_factory=RedisSettings)
    #: The namespace commands and subscribers use unless told otherwise (``-n``).
    namespace: str = "default"
    #: Prefix of every Redis key and channel (separates environments sharing a server).
    prefix: str = DEFAULT_PREFIX
    #: Events kept in each namespace's change log for replay (approximately).
    log_maxlen: int = Field(10_000, ge=1)
    subscriber: SubscriberSettings = Field(default_factory=SubscriberSettings)
    publisher: PublisherSettings = Field(default_factory=PublisherSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    postgres: PostgresSettings | None = None
    #: Where `hotreload publish` writes: ``redis`` (publish at once) or ``postgres`` (write the
    #: settings table, the source of truth; the daemon publishes it). ``--via`` overrides it.
    publish_via: Literal["redis", "postgres"] = "redis"
    sources: SourcesSettings = Field(default_factory=SourcesSettings)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)

    @field_validator("namespace", "prefix")
    @classmethod
    def _check_names(cls, value: str) -> str:
        return _name(value, "name")

    @model_validator(mode="after")
    def _check_publish_via(self) -> HotReloadConfig:
        if self.publish_via == "postgres" and self.postgres is None:
            raise ValueError("publish_via: postgres needs a postgres section")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlData(settings_cls))

    _config_file: Path | None = PrivateAttr(default=None)

    @property
    def config_file(self) -> Path | None:
        """The file this configuration was read from (absolute), or None."""
        return self._config_file

    @property
    def config_dir(self) -> Path | None:
        """The directory of `config_file` (schemas are imported from there first), or None."""
        return None if self._config_file is None else self._config_file.parent

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> HotReloadConfig:
        """A config for ``redis://...`` with everything else default."""
        return build_config({"redis": {"url": url}, **kwargs})


_KV_PASSWORD = re.compile(r"""((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)""", re.I)
_QUERY_PASSWORD = re.compile(r"([?&](?:ssl)?password=)[^&#]*", re.I)


def redact_url(url: str) -> str:
    """Replace every password in a URL or key=value DSN with ``***``.

    Works on the raw text (no URL parsing), so a password with ``@ / # ?`` in it is still
    hidden: everything between ``scheme://user:`` and the last ``@`` goes.
    """
    if "://" not in url:
        return _KV_PASSWORD.sub(r"\1***", url)
    scheme, rest = url.split("://", 1)
    at = rest.rfind("@")
    if at >= 0:
        user, colon, _password = rest[:at].partition(":")
        rest = f"{user}:***@{rest[at + 1:]}" if colon else rest
    return _QUERY_PASSWORD.sub(r"\1***", f"{scheme}://{rest}")


def env_var_for(loc: tuple[str | int, ...]) -> str | None:
    """The ``HOTRELOAD_*`` variable the value at ``loc`` came from, if one is set.

    The variable names the key itself (``HOTRELOAD_REDIS__ADDR``) or a section holding it as
    JSON (``HOTRELOAD_REDIS='{"addr": ...}'``); names are matched case-insensitively, as
    pydantic-settings reads them. The environment wins over the file, so a set variable is
    where the value came from.
    """
    present = {name.upper(): name for name in os.environ}
    for end in range(len(loc), 0, -1):
        wanted = ENV_PREFIX + "__".join(str(part) for part in loc[:end]).upper()
        if wanted in present:
            return present[wanted]
    return None


def _format_errors(exc: ValidationError, origin: str, overrides: frozenset[str]) -> str:
    """One line: the file's problems after its name, each variable's after the variable's."""
    from_file: list[str] = []
    from_env: list[str] = []
    for problem in validation_problems(exc):
        parts = problem.loc
        var = None if parts[:1] and parts[0] in overrides else env_var_for(parts)
        if var is None:
            from_file.append(f"{problem.key}: {problem.message}")
        elif var.upper() == ENV_PREFIX + "__".join(str(p) for p in parts).upper():
            from_env.append(f"{var}: {problem.message}")  # the variable names the key
        else:
            from_env.append(f"{var}: {problem.key}: {problem.message}")
    head = [f"{origin}: " + "; ".join(from_file)] if from_file else []
    return "; ".join(head + from_env)


@contextmanager
def _yaml_data(data: dict[str, Any]) -> Iterator[None]:
    token = _YAML_DATA.set(data)
    try:
        yield
    finally:
        _YAML_DATA.reset(token)


def build_config(data: dict[str, Any], *, origin: str = "config",
                 **overrides: Any) -> HotReloadConfig:
    """Validate a config mapping (as read from YAML) merged with the environment."""
    try:
        with _yaml_data(data):
            return HotReloadConfig(**overrides)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, origin, frozenset(overrides))) from None


def config_path(path: str | os.PathLike[str] | None) -> tuple[Path, bool]:
    """The config file to read and whether it was asked for explicitly."""
    if path is not None:
        return Path(path), True
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env), True
    return Path(DEFAULT_CONFIG_PATH), False


def load_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> HotReloadConfig:
    """Read, merge and validate the configuration; every problem is one `ConfigError` line."""
    file, explicit = config_path(path)
    data: Any = {}
    if file.exists():
        try:
            data = load_yaml(file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{file}:{mark.line + 1}" if mark is not None else str(file)
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"{where}: invalid YAML: {problem}") from None
        except RecursionError:
            raise ConfigError(f"{file}: invalid YAML: nested too deeply") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{file}: not UTF-8 text (byte {exc.start})") from None
        except OSError as exc:
            raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: the top level must be a mapping")
    elif explicit:
        raise ConfigError(f"{file}: no such config file")
    config = build_config(data, origin=str(file), **overrides)
    if file.exists():
        config._config_file = file.resolve()
    return config


def existing_config_dir(path: str | os.PathLike[str] | None) -> Path | None:
    """The directory of the config file `load_config` would read, if that file exists."""
    file, _ = config_path(path)
    return file.resolve().parent if file.is_file() else None


def as_config(config: HotReloadConfig | str | None) -> HotReloadConfig:
    """A config given as an object, a ``redis://`` URL, or None (`load_config`)."""
    if config is None:
        return load_config()
    if isinstance(config, str):
        return HotReloadConfig.from_url(config)
    return config
