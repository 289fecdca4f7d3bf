"""Configuration: YAML + environment, clear one-line errors, no secret ever printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotreload.config import HotReloadConfig, build_config, load_config, redact_url
from hotreload.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("HOTRELOAD_"):
            monkeypatch.delenv(key)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_the_seed_redis_block_is_accepted_as_is(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
redis:
  addr: "localhost:6379"
  password: ""
  db: 0
  pool_size: 10
  min_idle_conns: 5
"""))
    assert cfg.redis.effective_url() == "redis://localhost:6379/0"
    assert cfg.redis.pool_size == 10
    assert cfg.prefix == "hotreload"


def test_the_shipped_config_file_loads() -> None:
    cfg = load_config(Path(__file__).resolve().parents[2] / "config.yaml")
    assert cfg.namespace == "app"


def test_env_overrides_the_file_with_nested_names(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "redis:\n  addr: a:1\n  db: 2\nnamespace: x\n")
    monkeypatch.setenv("HOTRELOAD_REDIS__ADDR", "b:2")
    monkeypatch.setenv("HOTRELOAD_NAMESPACE", "y")
    cfg = load_config(path)
    assert (cfg.redis.addr, cfg.redis.db, cfg.namespace) == ("b:2", 2, "y")


def test_config_path_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTRELOAD_CONFIG", str(write(tmp_path, "namespace: fromenv\n")))
    assert load_config().namespace == "fromenv"


def test_default_path_may_be_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config().namespace == "default"


def test_url_is_an_alternative_to_addr() -> None:
    cfg = HotReloadConfig.from_url("rediss://u:p@h:6380/3")
    assert cfg.redis.effective_url() == "rediss://u:p@h:6380/3"
    assert cfg.redis.display_url() == "rediss://u:***@h:6380/3"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("redis:\n  adr: x\n", "config.yaml: redis.adr: unknown key"),
        ("redis:\n  db: many\n", "redis.db: Input should be a valid integer"),
        ("redis:\n  addr: nocolon\n", "redis.addr: must be host:port"),
        ("redis:\n  pool_size: 0\n", "redis.pool_size: Input should be greater than or equal to 1"),
        ("namespace: 'a b'\n", "namespace: invalid name"),
        ("- a\n- b\n", "the top level must be a mapping"),
        ("redis: [\n", "invalid YAML"),
        ("sources:\n  files:\n    - {path: a.yaml}\n",
         "sources.files[0].namespace: required key is missing"),
    ],
)
def test_bad_config_is_one_clear_line_naming_the_key(tmp_path: Path, text: str,
                                                     message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert str(tmp_path) in str(info.value)


def test_yaml_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config.yaml:3: invalid YAML"):
        load_config(write(tmp_path, "a: 1\nb: 2\nc: d: e\n"))


def _laughs() -> str:
    lines = ["a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]"]
    for i in range(1, 9):
        name, prev = chr(ord("a") + i), chr(ord("a") + i - 1)
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("text", "message"), [
    (_laughs(), "config.yaml:7: invalid YAML: with its aliases expanded, the document holds "
                "more than 1000000 nodes"),
    ("a: &a\n  - *a\n", "config.yaml:2: invalid YAML: alias *a is inside its own anchor "
                        "(not JSON)"),
    ("redis: " + "[" * 5000 + "]" * 5000 + "\n", "config.yaml:1: invalid YAML: nested too "
                                                  "deeply"),
], ids=["anchor-bomb", "recursive-alias", "deep"])
def test_hostile_yaml_config_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert str(info.value) == f"{tmp_path / message}"


def test_config_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"namespace: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"config.yaml: not UTF-8 text \(byte 14\)"):
        load_config(path)


def test_anchors_in_a_config_still_work(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
redis: &redis {addr: "cache:6380"}
sources:
  files:
    - &file {path: /etc/a.yaml, namespace: a}
    - {<<: *file, path: /etc/b.yaml, namespace: b}
"""))
    assert cfg.redis.addr == "cache:6380"
    assert [f.namespace for f in cfg.sources.files] == ["a", "b"]


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_secrets_never_appear_in_reprs_or_errors(tmp_path: Path) -> None:
    cfg = build_config({"redis": {"password": "hunter2"}, "security": {"hmac_key": "k3y"},
                        "postgres": {"dsn": "postgresql://u:pw@h/db"}})
    text = repr(cfg) + str(cfg) + cfg.redis.display_url() + cfg.model_dump_json()
    assert "hunter2" not in text and "k3y" not in text and ":pw@" not in text
    assert cfg.redis.effective_url() == "redis://:hunter2@localhost:6379/0"
    with pytest.raises(ConfigError) as info:
        build_config({"redis": {"password": "hunter2", "db": "x"}})
    assert "hunter2" not in str(info.value)


def test_redact_url_handles_key_value_dsns() -> None:
    assert redact_url("host=h password=pw user=u") == "host=h password=*** user=u"
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"


def test_a_bad_environment_variable_is_named_not_a_missing_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no config.yaml here
    monkeypatch.setenv("HOTRELOAD_REDIS__ADDR", "nonsense")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert str(info.value) == "HOTRELOAD_REDIS__ADDR: must be host:port, e.g. localhost:6379"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("HOTRELOAD_REDIS__DB", "many", "HOTRELOAD_REDIS__DB: Input should be a valid integer"),
        ("HOTRELOAD_REDIS__ADR", "x", "HOTRELOAD_REDIS__ADR: unknown key"),
        ("HOTRELOAD_REDIS", '{"addr": "x"}', "HOTRELOAD_REDIS: redis.addr: must be host:port"),
        ("hotreload_daemon__http", "9464", "hotreload_daemon__http: must be host:port"),
    ],
)
def test_environment_errors_name_the_variable_even_with_a_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str,
        message: str) -> None:
    path = write(tmp_path, "redis:\n  addr: good:1\n  db: 1\n")
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(message)
    assert str(path) not in str(info.value)


def test_file_and_environment_errors_each_name_their_origin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "redis:\n  addr: nocolon\n  db: 1\n")
    monkeypatch.setenv("HOTRELOAD_REDIS__DB", "many")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}: redis.addr: must be host:port, e.g. localhost:6379; HOTRELOAD_REDIS__DB: "
        "Input should be a valid integer, unable to parse string as an integer")


def test_secrets_from_the_environment_stay_out_of_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTRELOAD_REDIS__PASSWORD", "hunter2")
    monkeypatch.setenv("HOTRELOAD_REDIS__URL", "redis://:hunter2@h:1/0")
    monkeypatch.setenv("HOTRELOAD_REDIS__TLS", "true")
    with pytest.raises(ConfigError) as info:
        build_config({})
    assert "hunter2" not in str(info.value)
    assert str(info.value).startswith("config: redis: tls is true but url starts with redis://")


def test_a_cluster_from_its_block_or_its_url(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = build_config({"redis": {"cluster": {"nodes": ["r0:7000", "r1:7001"]},
                                  "password": "s3cret"}})
    assert cfg.redis.mode == "cluster"
    cluster, username, password, tls = cfg.redis.cluster_settings()
    assert (cluster.nodes, cluster.read_from_replicas, username, password, tls) == (
        ["r0:7000", "r1:7001"], True, None, "s3cret", False)
    assert cfg.redis.display_url() == "redis+cluster://:***@r0:7000,r1:7001/"

    cfg = HotReloadConfig.from_url(
        "rediss+cluster://app:p%40ss@r0:7000,r1:7001/?read_from_replicas=false")
    cluster, username, password, tls = cfg.redis.cluster_settings()
    assert (cluster.nodes, cluster.read_from_replicas, username, password, tls) == (
        ["r0:7000", "r1:7001"], False, "app", "p@ss", True)
    assert "p%40ss" not in cfg.redis.display_url() and "***" in cfg.redis.display_url()

    monkeypatch.setenv("HOTRELOAD_REDIS__CLUSTER__NODES", '["e0:7000", "e1:7000"]')
    monkeypatch.setenv("HOTRELOAD_REDIS__CLUSTER__READ_FROM_REPLICAS", "false")
    cfg = build_config({})
    assert cfg.redis.mode == "cluster" and cfg.redis.cluster is not None
    assert (cfg.redis.cluster.nodes, cfg.redis.cluster.read_from_replicas) == (
        ["e0:7000", "e1:7000"], False)


def test_sentinel_settings_and_their_secrets() -> None:
    cfg = build_config({"redis": {"password": "m4ster", "db": 2, "sentinel": {
        "master": "mymaster", "nodes": ["s0:26379", "s1:26379"],
        "sentinel_password": "s3ntinel"}}})
    assert cfg.redis.mode == "sentinel"
    assert cfg.redis.display_url() == "redis+sentinel://:***@s0:26379,s1:26379/mymaster/2"
    text = repr(cfg) + str(cfg) + cfg.model_dump_json() + cfg.redis.display_url()
    assert "m4ster" not in text and "s3ntinel" not in text
    assert build_config({}).redis.mode == "single"


@pytest.mark.parametrize(
    ("redis", "message"),
    [
        ({"cluster": {"nodes": []}}, "redis.cluster.nodes: List should have at least 1 item"),
        ({"cluster": {"nodes": ["nocolon"]}}, "node 'nocolon' must be host:port"),
        ({"cluster": {"nodes": ["a:1"]}, "addr": "b:2"}, "addr and cluster exclude each other"),
        ({"cluster": {"nodes": ["a:1"]}, "url": "redis://b:2/0"},
         "url and cluster exclude each other"),
        ({"cluster": {"nodes": ["a:1"]}, "db": 3}, "a Redis Cluster has only database 0"),
        ({"cluster": {"nodes": ["a:1"]}, "sentinel": {"master": "m", "nodes": ["s:1"]}},
         "cluster and sentinel exclude each other"),
        ({"sentinel": {"master": "", "nodes": ["s:1"]}}, "redis.sentinel.master"),
        ({"sentinel": {"master": "m", "nodes": ["s:1"]}, "url": "redis://:pw@h:1/0"},
         "url and sentinel exclude each other"),
        ({"url": "redis+cluster://u:pw@a:1/2"}, "a redis+cluster URL has no database"),
        ({"url": "redis+cluster://u:pw@a:1,b/"}, "node 'b' must be host:port"),
        ({"url": "redis+cluster://u:pw@a:1/?tls=1"}, "takes one option: read_from_replicas"),
        ({"url": "redis+cluster://u:pw@a:1/", "tls": True}, "use rediss://"),
    ],
)
def test_bad_cluster_or_sentinel_settings_are_one_line_without_secrets(
        redis: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config({"redis": redis})
    assert message in str(info.value)
    assert "\n" not in str(info.value) and "pw" not in str(info.value)
