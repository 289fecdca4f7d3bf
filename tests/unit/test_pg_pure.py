"""Service-free parts of the PostgreSQL source: payloads, rows to documents, config, conninfo."""

from __future__ import annotations

from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict
from pydantic import SecretStr

from hotreload.config import InvalidationChannel, PostgresSettings, build_config
from hotreload.daemon import db, pgconn
from hotreload.daemon.sources.pg_payload import (
    InvalidationRequest,
    parse_invalidation,
    settings_namespace,
)
from hotreload.errors import ConfigError, ProtocolError
from hotreload.wire import DEFAULT_MAX_MESSAGE_BYTES

# --------------------------------------------------------------------------- payloads


@pytest.mark.parametrize(("payload", "expected"), [
    ("", InvalidationRequest("app", everything=True)),
    ('{"all": true}', InvalidationRequest("app", everything=True)),
    ('{"keys": ["user.42"]}', InvalidationRequest("app", keys=("user.42",))),
    ('{"namespace": "ns", "prefixes": ["feed:"], "keys": []}',
     InvalidationRequest("ns", prefixes=("feed:",))),
])
def test_parse_invalidation(payload: str, expected: InvalidationRequest) -> None:
    assert parse_invalidation(payload, "app") == expected


@pytest.mark.parametrize(("payload", "message"), [
    ("nope", "^payload is not valid JSON: "),
    ("[" * 7000, "^payload nests more than 64 levels"),
    ("[1]", "JSON object"),
    ('{"keys": "a"}', "list of strings"),
    ('{"keys": [1]}', "list of strings"),
    ('{"key": ["a"]}', "unknown payload field"),
    ("{}", "nothing to invalidate"),
    ('{"all": false}', "nothing to invalidate"),
    ('{"all": 1}', "true or false"),
    ('{"namespace": 3, "all": true}', "must be a string"),
    ('{"namespace": "a b", "all": true}', "invalid namespace"),
    ('{"keys": ["a..b"]}', "invalid settings key"),
    ('{"prefixes": [""]}', "empty"),
    ('{"all": NaN}', "not valid JSON"),
])
def test_malformed_invalidation(payload: str, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        parse_invalidation(payload, "app")


@pytest.mark.parametrize(("payload", "expected"), [
    ('{"namespace" : "app", "key" : "a.b", "op" : "update"}', "app"),
    ('{"namespace": "app", "op": "insert"}', "app"),
    ('{"op": "truncate"}', None),
    ("", None),
    ("garbage", None),
    ('{"namespace": "bad ns"}', None),
    ('["app"]', None),
    ("[" * 7000, None),  # deeper than the JSON decoder recurses: re-read everything
])
def test_settings_namespace(payload: str, expected: str | None) -> None:
    assert settings_namespace(payload) == expected


# --------------------------------------------------------------------------- rows


def test_rows_to_documents() -> None:
    read = db.build_documents([
        ("app", "db.pool_size", 10),
        ("app", "db.host", "pg1"),
        ("app", "flags", {"a": True, "b": {"c": None}}),
        ("app", "empty", {}),
        ("other", "x", [1, 2]),
    ])
    assert read.documents == {
        "app": {"db": {"pool_size": 10, "host": "pg1"}, "flags": {"a": True, "b": {"c": None}},
                "empty": {}},
        "other": {"x": [1, 2]},
    }
    assert read.problems == {}


@pytest.mark.parametrize(("rows", "doc", "bad_key"), [
    ([("app", "db", 5), ("app", "db.pool", 3)], {"db": 5}, "db.pool"),
    ([("app", "a", {"b": 1}), ("app", "a.b", 2)], {"a": {"b": 1}}, "a.b"),
    ([("app", "a", {"b": {"c": 1}}), ("app", "a.b", 2)], {"a": {"b": {"c": 1}}}, "a.b"),
    ([("app", "", 1), ("app", "ok", 1)], {"ok": 1}, "''"),
    ([("app", "a..b", 1)], {}, "a..b"),
    ([("app", "a", {"x.y": 1})], {}, "x.y"),
])
def test_bad_rows_are_skipped_and_reported(rows: list[tuple[str, str, Any]],
                                           doc: dict[str, Any], bad_key: str) -> None:
    read = db.build_documents(rows)
    assert read.documents == {"app": doc}
    assert len(read.problems["app"]) == 1
    assert bad_key in read.problems["app"][0]


def test_empty_object_leaf_with_children_is_fine() -> None:
    read = db.build_documents([("app", "e", {}), ("app", "e.f", 1)])
    assert read.documents == {"app": {"e": {"f": 1}}}
    assert read.problems == {}


@pytest.mark.parametrize(("text", "size", "why"), [
    (None, None, "the value is NULL (the JSON null is 'null')"),
    (None, 50_000, "key and value take 50000 bytes, over the limit of 10000 bytes"),
    ('"' + "x" * 12_000 + '"', 12_003, "over the limit of 10000 bytes"),
    ("not json", 9, "the value is not valid JSON: Expecting value"),
    ("NaN", 4, "the value is not valid JSON: NaN is not valid JSON"),
    ("[" * 3000 + "]" * 3000, 6001, "the value nests more than 64 levels"),
    ("[" * 33 + "]" * 33, 67, "k: nests more than 32 levels"),
    ("1e999", 6, "k: inf is not valid JSON"),
    ("1" * 5000, 5001, "the value is not valid JSON: Exceeds the limit (4300 digits)"),
    ('"\\udfff"', 9, "k: a string is not valid Unicode (lone surrogate)"),
])
def test_values_that_cannot_be_used_are_reported(text: str | None, size: int | None,
                                                 why: str) -> None:
    value = db.decode_value(text, size, 10_000)
    ok = db.decode_value("1", 3, 10_000)
    read = db.build_documents([("app", "k", value), ("app", "ok", ok)])
    assert read.documents == {"app": {"ok": 1}}
    [line] = read.problems["app"]
    assert line.startswith("row ('app', 'k'): ") and why in line, line


def test_leaves_and_keys_have_the_protocols_limits() -> None:
    leaf = db.decode_value("[" * 32 + "]" * 32, 65, 1000)  # MAX_LEAF_DEPTH levels: a leaf
    deeper = db.decode_value('{"d": ' + "[" * 33 + "]" * 33 + "}", 73, 1000)
    spread = db.decode_value('{"y": {"z": 1}}', 15, 1000)
    key_31 = ".".join(["k"] * 31)
    read = db.build_documents([("app", "a.b", leaf), ("app", "a.c", deeper),
                               ("app", key_31, spread)])
    assert read.documents["app"] == {"a": {"b": leaf}}
    first, second = read.problems["app"]
    assert first.startswith("row ('app', 'a.c'): a.c.d: nests more than 32 levels"), first
    assert "it has 33 segments (at most 32)" in second, second  # the object's keys count


def test_bad_namespace_is_reported() -> None:
    read = db.build_documents([("bad ns", "a", 1), ("ok", "a", 1)])
    assert read.documents == {"ok": {"a": 1}}
    assert "invalid namespace" in read.problems["bad ns"][0]


# --------------------------------------------------------------------------- config


def test_channels_accept_strings_and_objects() -> None:
    cfg = build_config({"namespace": "app", "postgres": {
        "channels": ["inv", {"channel": "orders_inv", "namespace": "orders"}]}})
    assert cfg.postgres is not None
    assert cfg.postgres.invalidation_channels(cfg.namespace) == [
        InvalidationChannel(channel="inv", namespace="app"),
        InvalidationChannel(channel="orders_inv", namespace="orders"),
    ]


@pytest.mark.parametrize(("postgres", "message"), [
    ({"channels": ["1abc"]}, "invalid channel"),
    ({"channels": [{"channel": "x", "namespace": "a b"}]}, "namespace"),
    ({"channels": ["hotreload_settings"]}, "must all differ"),
    ({"channels": ["a", "a"]}, "must all differ"),
    ({"settings_table": "x" * 49}, "invalid name"),
    ({"notify_channel": 'a"b'}, "invalid name"),
])
def test_bad_postgres_config(postgres: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config({"postgres": postgres})


def test_conninfo_merges_password_and_keepalives() -> None:
    s = PostgresSettings(dsn=SecretStr("postgresql://u@db.example:5433/app"),
                         password=SecretStr("p@ss word"), tcp_user_timeout_ms=7000)
    info = conninfo_to_dict(pgconn.conninfo(s, application_name="x"))
    assert info["password"] == "p@ss word"
    assert info["host"] == "db.example"
    assert info["keepalives"] == "1"
    assert info["keepalives_idle"] == str(s.keepalives_idle)
    assert info["keepalives_interval"] == str(s.keepalives_interval)
    assert info["keepalives_count"] == str(s.keepalives_count)
    assert info["tcp_user_timeout"] == "7000"
    assert info["connect_timeout"] == str(s.connect_timeout)
    assert info["application_name"] == "x"
    assert "p@ss" not in s.display_dsn()
    assert "p@ss" not in repr(s)


def test_conninfo_keeps_the_dsn_application_name_and_redacts() -> None:
    s = PostgresSettings(dsn=SecretStr("postgresql://u:hunter2@h/d?application_name=mine"))
    assert conninfo_to_dict(pgconn.conninfo(s))["application_name"] == "mine"
    assert "hunter2" not in s.display_dsn()
    kv = PostgresSettings(dsn=SecretStr("host=h password=hunter2 dbname=d"))
    assert "hunter2" not in kv.display_dsn()


def test_invalid_dsn_is_a_config_error_without_the_secret() -> None:
    s = PostgresSettings(dsn=SecretStr("host=h password=hunter2 = broken"))
    with pytest.raises(ConfigError) as info:
        pgconn.conninfo(s)
    assert "hunter2" not in str(info.value)


def test_the_daemon_skips_rows_that_could_never_be_published() -> None:
    from hotreload.daemon.setup import build_sources
    from hotreload.daemon.sources.postgres import PostgresSource

    config = build_config({"postgres": {}, "security": {"max_message_bytes": 4096}})
    [source] = build_sources(config)
    assert isinstance(source, PostgresSource) and source.max_row_bytes == 2048
    assert db.DEFAULT_MAX_ROW_BYTES == DEFAULT_MAX_MESSAGE_BYTES // 2
