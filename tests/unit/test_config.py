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
