"""Every way a settings document can be bad, and what the one-line error says."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from hotreload.documents import (
    MAX_DOCUMENT_BYTES,
    MAX_YAML_ALIASES,
    MAX_YAML_CHARS,
    MAX_YAML_NODES,
    Document,
    Problem,
    check_document,
    detect_format,
    digest,
    load_document,
    load_schema,
    parse_document,
    read_bytes,
    schema_problems,
    validate_document,
)
from hotreload.errors import ConfigError, DocumentError, SettingsRejected
from hotreload.wire import MAX_DEPTH, MAX_KEY_SEGMENTS, MAX_LEAF_DEPTH

TESTS_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _schemas_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS_DIR))


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def fails(tmp_path: Path, name: str, text: str | bytes, **kw: str) -> DocumentError:
    path = write(tmp_path, name, text)
    with pytest.raises(DocumentError) as info:
        load_document(path, **kw)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    return info.value


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize(("name", "expected"), [
    ("a.yaml", "yaml"), ("a.yml", "yaml"), ("A.YML", "yaml"), ("a.json", "json"),
    ("a.toml", "toml"), ("dir.d/a.Json", "json"),
])
def test_detect_format_by_extension(name: str, expected: str) -> None:
    assert detect_format(name) == expected


def test_explicit_format_wins() -> None:
    assert detect_format("settings.conf", "json") == "json"
    assert detect_format("a.yaml", "toml") == "toml"


def test_unknown_extension_or_format() -> None:
    with pytest.raises(ConfigError, match=r"settings\.conf: cannot tell the format"):
        detect_format("settings.conf")
    with pytest.raises(ConfigError, match="unknown document format 'ini'"):
        detect_format("a.yaml", "ini")


# --------------------------------------------------------------------------- good documents


def test_yaml_document(tmp_path: Path) -> None:
    raw = b"db:\n  host: db1\n  pool_size: 5\nflags: [a, b]\nempty: {}\nnothing: null\n"
    doc = load_document(write(tmp_path, "app.yaml", raw))
    assert isinstance(doc, Document)
    assert doc.format == "yaml"
    assert doc.data == {"db": {"host": "db1", "pool_size": 5}, "flags": ["a", "b"],
                        "empty": {}, "nothing": None}
    assert doc.flat == {"db.host": "db1", "db.pool_size": 5, "flags": ["a", "b"],
                        "empty": {}, "nothing": None}
    assert doc.digest == "sha256:" + hashlib.sha256(raw).hexdigest() == digest(raw)


def test_json_and_toml_documents(tmp_path: Path) -> None:
    expected = {"db": {"host": "db1", "pool_size": 5}, "ratio": 0.5, "on": True}
    j = load_document(write(tmp_path, "a.json",
                            '{"db": {"host": "db1", "pool_size": 5}, "ratio": 0.5, "on": true}'))
    t = load_document(write(tmp_path, "a.toml",
                            'ratio = 0.5\non = true\n[db]\nhost = "db1"\npool_size = 5\n'))
    assert j.data == t.data == expected


def test_yaml_timestamps_stay_strings_and_merge_keys_work(tmp_path: Path) -> None:
    text = "since: 2024-01-01\nbase: &b\n  x: 1\n  y: 2\nd:\n  <<: *b\n  x: 3\n"
    doc = load_document(write(tmp_path, "a.yaml", text))
    assert doc.data["since"] == "2024-01-01"
    assert doc.data["d"] == {"x": 3, "y": 2}


def test_bom_is_accepted(tmp_path: Path) -> None:
    assert load_document(write(tmp_path, "a.json", b'\xef\xbb\xbf{"a": 1}')).data == {"a": 1}


def test_dots_allowed_inside_list_items(tmp_path: Path) -> None:
    doc = load_document(write(tmp_path, "a.yaml", "routes:\n  - a.b: 1\n"))
    assert doc.flat == {"routes": [{"a.b": 1}]}


def test_explicit_empty_mapping_is_a_document(tmp_path: Path) -> None:
    assert load_document(write(tmp_path, "a.yaml", "{}\n")).data == {}


# --------------------------------------------------------------------------- reading


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match=r"nope\.yaml: no such file") as info:
        load_document(tmp_path / "nope.yaml")
    assert info.value.reason == "missing"


def test_broken_symlink_is_missing(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").symlink_to(tmp_path / "gone.yaml")
    with pytest.raises(DocumentError) as info:
        read_bytes(tmp_path / "a.yaml")
    assert info.value.reason == "missing"


def test_directory_cannot_be_read(tmp_path: Path) -> None:
    (tmp_path / "d.yaml").mkdir()
    with pytest.raises(DocumentError, match=r"d\.yaml: cannot read: ") as info:
        load_document(tmp_path / "d.yaml")
    assert info.value.reason == "read"


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    err = fails(tmp_path, "a.yaml", b"a: 1\nb: caf\xe9\n")
    assert err.reason == "read"
    assert ":2: not UTF-8 text" in str(err)


# --------------------------------------------------------------------------- syntax


@pytest.mark.parametrize("text", ["", "   \n\n", "\t"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    err = fails(tmp_path, "a.yaml", text)
    assert err.reason == "empty"
    assert str(err).endswith("the file is empty")


def test_yaml_with_only_comments_is_empty(tmp_path: Path) -> None:
    err = fails(tmp_path, "a.yaml", "# nothing yet\n")
    assert err.reason == "empty"


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    err = fails(tmp_path, "a.yaml", "a: 1\nb:\n  c: d: e\n")
    assert err.reason == "yaml"
    assert ":3:7: invalid YAML: mapping values are not allowed here" in str(err)


def test_truncated_yaml(tmp_path: Path) -> None:
    err = fails(tmp_path, "a.yaml", "a: 1\nb: [1, 2\n")
    assert err.reason == "yaml"
    assert ":3:1: invalid YAML: expected ',' or ']'" in str(err)


def test_yaml_duplicate_key(tmp_path: Path) -> None:
    err = fails(tmp_path, "a.yaml", "a: 1\nb:\n  x: 1\n  x: 2\n")
    assert err.reason == "yaml"
    assert ":4:3: invalid YAML: found duplicate key 'x'" in str(err)


def test_yaml_multiple_documents(tmp_path: Path) -> None:
    err = fails(tmp_path, "a.yaml", "a: 1\n---\nb: 2\n")
    assert err.reason == "yaml"
    assert ":2:1: invalid YAML: " in str(err)


def test_yaml_unsafe_tag_is_refused(tmp_path: Path) -> None:
    err = fails(tmp_path, "a.yaml", "a: !!python/object/apply:os.system [echo hi]\n")
    assert err.reason == "yaml"
    assert ":1:4: invalid YAML: could not determine a constructor" in str(err)


def test_json_syntax_error_names_line(tmp_path: Path) -> None:
    err = fails(tmp_path, "a.json", '{\n  "a": 1,\n  "b": \n}')
    assert err.reason == "json"
    assert ":4:1: invalid JSON: Expecting value" in str(err)


def test_truncated_json(tmp_path: Path) -> None:
    err = fails(tmp_path, "a.json", '{"a": {"b": 1')
    assert err.reason == "json"
    assert "invalid JSON" in str(err)


def test_json_duplicate_key(tmp_path: Path) -> None:
    err = fails(tmp_path, "a.json", '{"a": 1, "a": 2}')
    assert err.reason == "json"
    assert "duplicate key 'a'" in str(err)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_json_nan(tmp_path: Path, value: str) -> None:
    err = fails(tmp_path, "a.json", f'{{"a": {value}}}')
    assert err.reason == "json"
    assert f"{value} is not valid JSON" in str(err)


def test_toml_syntax_error_names_line(tmp_path: Path) -> None:
    err = fails(tmp_path, "a.toml", 'a = 1\nb = \n')
    assert err.reason == "toml"
    assert ":2:5: invalid TOML: Invalid value" in str(err)


def test_toml_duplicate_key(tmp_path: Path) -> None:
    err = fails(tmp_path, "a.toml", "a = 1\na = 2\n")
    assert err.reason == "toml"
    assert ":2:" in str(err)


# --------------------------------------------------------------------------- shape and values


@pytest.mark.parametrize(("name", "text", "kind"), [
    ("a.yaml", "- 1\n- 2\n", "a list"),
    ("a.yaml", "just text\n", "a string"),
    ("a.yaml", "42\n", "a number"),
    ("a.json", "null", "null"),
    ("a.json", "true", "a boolean"),
])
def test_top_level_must_be_a_mapping(tmp_path: Path, name: str, text: str, kind: str) -> None:
    err = fails(tmp_path, name, text)
    assert err.reason == "type"
    assert str(err).endswith(f"the top level must be a mapping of settings, not {kind}")


def test_dotted_key_is_rejected_with_its_line(tmp_path: Path) -> None:
    err = fails(tmp_path, "a.yaml", "a: 1\ndb:\n  pool.size: 5\n")
    assert err.reason == "key"
    assert str(err).endswith(":3: db: key 'pool.size' must be a non-empty string without '.' "
                             "(nest mappings instead)")


def test_dotted_key_in_json(tmp_path: Path) -> None:
    err = fails(tmp_path, "a.json", '{"db.pool_size": 5}')
    assert err.reason == "key"
    assert "(top level): key 'db.pool_size'" in str(err)


def test_empty_and_non_string_keys(tmp_path: Path) -> None:
    assert "key ''" in str(fails(tmp_path, "a.json", '{"": 1}'))
    err = fails(tmp_path, "a.yaml", "a: 1\n7: seven\n")
    assert err.reason == "key"
    assert ":2: (top level): key 7 must be" in str(err)


@pytest.mark.parametrize(("text", "fragment"), [
    ("a:\n  b: .nan\n", ":2: a.b: nan is not a JSON number"),
    ("a: .inf\n", ":1: a: inf is not a JSON number"),
    ("a: !!binary aGk=\n", ":1: a: a bytes is not a JSON value (quote it)"),
    ("a: !!set {x}\n", ":1: a: a set is not a JSON value"),
    ("l:\n  - 1\n  - .nan\n", ":3: l[1]: nan is not a JSON number"),
])
def test_yaml_values_must_be_json(tmp_path: Path, text: str, fragment: str) -> None:
    err = fails(tmp_path, "a.yaml", text)
    assert err.reason == "type"
    assert fragment in str(err)


def test_json_overflowing_number(tmp_path: Path) -> None:
    err = fails(tmp_path, "a.json", '{"a": {"b": 1e400}}')
    assert err.reason == "type"
    assert "a.b: inf is not a JSON number" in str(err)


@pytest.mark.parametrize(("text", "fragment"), [
    ("when = 1979-05-27\n", "when: a date is not a JSON value (quote it)"),
    ("[t]\nat = 07:32:00\n", "t.at: a time is not a JSON value"),
    ("x = nan\n", "x: nan is not a JSON number"),
])
def test_toml_values_must_be_json(tmp_path: Path, text: str, fragment: str) -> None:
    err = fails(tmp_path, "a.toml", text)
    assert err.reason == "type"
    assert fragment in str(err)


def test_parse_document_works_on_bytes() -> None:
    doc = parse_document(b"a: 1\n", "yaml", origin="<stdin>")
    assert doc.origin == "<stdin>"
    assert doc.flat == {"a": 1}
    with pytest.raises(DocumentError, match=r"^<stdin>: the file is empty$"):
        parse_document(b"", "json", origin="<stdin>")


# --------------------------------------------------------------------------- schemas


def test_load_schema() -> None:
    from file_schemas import AppSettings  # type: ignore[import-not-found,unused-ignore]

    assert load_schema("file_schemas:AppSettings") is AppSettings


@pytest.mark.parametrize(("spec", "fragment"), [
    ("file_schemas.AppSettings", "use 'package.module:ClassName'"),
    (":AppSettings", "use 'package.module:ClassName'"),
    ("file_schemas:", "use 'package.module:ClassName'"),
    ("no_such_module_xyz:Settings", "cannot import 'no_such_module_xyz': ModuleNotFoundError"),
    ("file_schemas:Missing", "'file_schemas' has no 'Missing'"),
    ("file_schemas:NOT_A_MODEL", "NOT_A_MODEL is not a pydantic BaseModel class"),
    ("file_schemas:Plain", "Plain is not a pydantic BaseModel class"),
])
def test_load_schema_errors(spec: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_schema(spec)
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"schema {spec!r}: ")


def test_load_schema_module_that_fails_to_import(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "broken_schema_mod.py", "raise RuntimeError('no database here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="RuntimeError: no database here"):
        load_schema("broken_schema_mod:Settings")


def test_schema_errors_name_every_key_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "app.yaml",
                 "name: app\ndb:\n  host: db1\n  pool_size: many\ncolour: red\n")
    with pytest.raises(SettingsRejected) as info:
        load_document(path, schema="file_schemas:AppSettings")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: does not match schema AppSettings: ")
    assert "db.pool_size (line 4): Input should be a valid integer" in message
    assert "colour (line 5): unknown key" in message


def test_schema_problems_structured() -> None:
    from file_schemas import Strict

    problems = schema_problems({"port": "x", "extra": 1}, Strict)
    assert sorted(problems, key=lambda p: p.key) == [
        Problem("extra", "unknown key"),
        Problem("name", "required key is missing"),
        Problem("port", "Input should be a valid integer, unable to parse string as an integer"),
    ]
    assert Problem("a.b", "bad", 3).render("f.yaml") == "f.yaml:3: a.b: bad"
    assert Problem("a.b", "bad").render("f.yaml") == "f.yaml: a.b: bad"


def test_schema_range_error_in_json(tmp_path: Path) -> None:
    path = write(tmp_path, "app.json", '{"db": {"pool_size": 1000}}')
    with pytest.raises(SettingsRejected, match=r"db\.pool_size: Input should be less than or "
                                               r"equal to 100"):
        load_document(path, schema="file_schemas:AppSettings")


def test_nested_list_error_path() -> None:
    from file_schemas import AppSettings

    text = "feature:\n  dark: maybe\n"
    with pytest.raises(SettingsRejected, match=r"feature\.dark \(line 2\): Input should be a "
                                               r"valid boolean"):
        validate_document({"feature": {"dark": "maybe"}}, AppSettings, origin="a.yaml",
                          yaml_text=text)


def test_crashing_validator_is_a_rejection() -> None:
    from file_schemas import Crashing

    with pytest.raises(SettingsRejected, match="validation failed: KeyError"):
        validate_document({"name": "boom"}, Crashing)
    validate_document({"name": "fine"}, Crashing)


def test_valid_document_with_schema(tmp_path: Path) -> None:
    from file_schemas import AppSettings

    path = write(tmp_path, "app.yaml", "db:\n  pool_size: 7\n")
    assert load_document(path, schema=AppSettings).data == {"db": {"pool_size": 7}}
    assert check_document(b"db: {pool_size: 8}", "yaml", origin="x",
                          model=AppSettings).flat == {"db.pool_size": 8}


# --------------------------------------------------------------------------- hostile files


DEEP = {
    "yaml": "b: " + "[" * 5000 + "]" * 5000 + "\n",
    "json": '{"b": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "toml": "b = " + "[" * 5000 + "]" * 5000 + "\n",
}


@pytest.mark.parametrize("fmt", sorted(DEEP))
def test_deep_nesting_is_a_rejection(tmp_path: Path, fmt: str) -> None:
    err = fails(tmp_path, f"deep.{fmt}", DEEP[fmt])
    assert err.reason == fmt
    assert str(err) == f"{tmp_path / f'deep.{fmt}'}: invalid {fmt.upper()}: nested too deeply"


@pytest.mark.parametrize("depth", [100, 300, 600, 900, 950, 980, 1000, 1100])
def test_any_nesting_depth_is_a_document_or_a_rejection(depth: int) -> None:
    """Depths the parser accepts but the checks below it cannot walk are rejections too."""
    for fmt, text in [("json", '{"b": ' + "[" * depth + "]" * depth + "}"),
                      ("json", '{"b": ' + '{"a": ' * depth + "1" + "}" * depth + "}"),
                      ("yaml", "b: " + "[" * depth + "]" * depth)]:
        try:
            parse_document(text.encode(), fmt, origin="x")  # type: ignore[arg-type]
        except DocumentError as exc:
            rejected: DocumentError | None = exc
        else:
            rejected = None
        if rejected is not None:
            assert (rejected.reason, str(rejected)) == (
                fmt, f"x: invalid {fmt.upper()}: nested too deeply")


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "a.yaml"
    os.mkfifo(fifo)  # no writer: a plain open() would block forever
    with pytest.raises(DocumentError, match=r"a\.yaml: cannot read: not a regular file") as info:
        load_document(fifo)
    assert info.value.reason == "read"


def test_a_symlink_to_a_fifo_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "a.yaml").symlink_to(tmp_path / "pipe")
    with pytest.raises(DocumentError, match="not a regular file") as info:
        read_bytes(tmp_path / "a.yaml")
    assert info.value.reason == "read"


def test_a_fifo_swapped_in_after_the_check_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replaced between stat and open: the open does not block, and fstat catches it."""
    fifo = tmp_path / "a.yaml"
    os.mkfifo(fifo)
    regular = write(tmp_path, "b.yaml", "a: 1\n")
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: real_stat(regular))
    with pytest.raises(DocumentError, match="not a regular file") as info:
        read_bytes(fifo)
    assert info.value.reason == "read"


def test_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as fh:
        fh.truncate(MAX_DOCUMENT_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(DocumentError) as info:
        load_document(big)
    assert info.value.reason == "read"
    assert str(info.value) == (f"{big}: cannot read: {MAX_DOCUMENT_BYTES + 1} bytes is over the "
                               f"limit of {MAX_DOCUMENT_BYTES} bytes")


def test_size_limit_is_exact(tmp_path: Path) -> None:
    path = write(tmp_path, "a.json", '{"k": "' + "x" * 91 + '"}')  # 100 bytes
    assert len(read_bytes(path, max_bytes=100)) == 100
    with pytest.raises(DocumentError, match="over the limit of 99 bytes"):
        read_bytes(path, max_bytes=99)


def test_a_file_that_grows_after_the_check_is_cut_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = write(tmp_path, "big.yaml", "a: " + "x" * 300 + "\n")
    small = os.stat(write(tmp_path, "small.yaml", "a: 1\n"))
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: small)  # what the checks saw
    monkeypatch.setattr(os, "fstat", lambda fd: small)
    with pytest.raises(DocumentError, match="over the limit of 100 bytes") as info:
        read_bytes(big, max_bytes=100)
    assert info.value.reason == "read"


# --------------------------------------------------------------------------- depth and size bounds


@pytest.mark.parametrize("fmt", ["yaml", "json", "toml"])
def test_exactly_max_depth_is_a_document_and_one_more_is_not(fmt: str) -> None:
    def text(levels: int) -> str:
        # 32 mappings (the top level and a 32-segment key) around a list nesting the rest
        lists = levels - MAX_KEY_SEGMENTS
        inner = "[" * lists + "]" * lists
        opening = {"yaml": "{a: ", "json": '{"a": ', "toml": "{a = "}[fmt]
        inner = opening * (MAX_KEY_SEGMENTS - 1) + inner + "}" * (MAX_KEY_SEGMENTS - 1)
        return {"yaml": f"a: {inner}\n", "json": f'{{"a": {inner}}}',
                "toml": f"a = {inner}\n"}[fmt]

    doc = parse_document(text(MAX_DEPTH).encode(), fmt, origin="x")  # type: ignore[arg-type]
    (key,) = doc.flat
    assert key.count(".") + 1 == MAX_KEY_SEGMENTS
    with pytest.raises(DocumentError) as info:
        parse_document(text(MAX_DEPTH + 1).encode(), fmt, origin="x")  # type: ignore[arg-type]
    assert (info.value.reason, str(info.value)) == (fmt, f"x: invalid {fmt.upper()}: "
                                                         "nested too deeply")


@pytest.mark.parametrize(("text", "reason", "message"), [
    ("{" + '"a": {' * MAX_KEY_SEGMENTS + '"b": 1' + "}" * MAX_KEY_SEGMENTS + "}", "key",
     ": it has 33 segments (at most 32)"),
    ('{"a": ' + "[" * (MAX_LEAF_DEPTH + 1) + "]" * (MAX_LEAF_DEPTH + 1) + "}", "type",
     f"x: a: nests more than {MAX_LEAF_DEPTH} levels"),
    ('{"a": "\\ud800"}', "type", "x: a: a string is not valid Unicode (lone surrogate)"),
    ('{"' + "k" * 513 + '": 1}', "key", "has 513 bytes (at most 512)"),
])
def test_the_protocols_limits_on_keys_and_leaves(text: str, reason: str, message: str) -> None:
    with pytest.raises(DocumentError) as info:
        parse_document(text.encode(), "json", origin="x")
    assert info.value.reason == reason
    assert message in str(info.value)


def _laughs(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs": each level lists the previous one ``width`` times."""
    lines = ["a: &a [" + ",".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        name, prev = chr(ord("a") + i), chr(ord("a") + i - 1)
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_an_anchor_bomb_is_rejected_while_parsing(tmp_path: Path) -> None:
    bomb = _laughs()
    assert len(bomb) < 350  # 9 ** 9 "lol"s once expanded
    err = fails(tmp_path, "bomb.yaml", bomb)
    assert err.reason == "too_large"
    assert str(err) == (f"{tmp_path / 'bomb.yaml'}:7:4: YAML too large: with its aliases "
                        f"expanded, the document holds more than {MAX_YAML_NODES} nodes")


def test_a_long_string_repeated_by_aliases_is_rejected(tmp_path: Path) -> None:
    chunk = "x" * 200_000
    text = f'a: &a "{chunk}"\nb: [' + ", ".join(["*a"] * 100) + "]\n"  # 20 MB of text
    err = fails(tmp_path, "long.yaml", text)
    assert err.reason == "too_large"
    assert f"more than {MAX_YAML_CHARS} characters of text" in str(err)


def test_too_many_aliases_are_rejected(tmp_path: Path) -> None:
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * (MAX_YAML_ALIASES + 1)) + "]\n"
    err = fails(tmp_path, "aliases.yaml", text)
    assert err.reason == "too_large"
    assert f"more than {MAX_YAML_ALIASES} aliases" in str(err)
    ok = "a: &a 1\nb: [" + ", ".join(["*a"] * MAX_YAML_ALIASES) + "]\n"
    assert len(load_document(write(tmp_path, "ok.yaml", ok)).data["b"]) == MAX_YAML_ALIASES


def test_a_recursive_alias_is_rejected(tmp_path: Path) -> None:
    err = fails(tmp_path, "loop.yaml", "a: &a\n  - 1\n  - *a\n")
    assert err.reason == "yaml"
    assert str(err) == (f"{tmp_path / 'loop.yaml'}:3:5: invalid YAML: alias *a is inside its "
                        "own anchor (not JSON)")


def test_ordinary_anchors_aliases_and_merge_keys_still_work(tmp_path: Path) -> None:
    text = """\
defaults: &defaults
  timeout: 5
  retries: [1, 2, 4]
hosts: &hosts [db1, db2]
services:
  api:
    <<: *defaults
    timeout: 10
    hosts: *hosts
  worker:
    <<: *defaults
    hosts: *hosts
small_bomb: &b [*hosts, *hosts, *hosts]
twice: [*b, *b]
"""
    data = load_document(write(tmp_path, "ok.yaml", text)).data
    assert data["services"]["api"] == {"timeout": 10, "retries": [1, 2, 4],
                                       "hosts": ["db1", "db2"]}
    assert data["services"]["worker"]["timeout"] == 5
    assert data["twice"] == [[["db1", "db2"]] * 3] * 2


def test_the_budget_counts_expanded_nodes_exactly() -> None:
    # 8 levels of 9: 9 ** 8 + ... nodes (~48 million) is over; 6 levels (~600,000) is under
    assert parse_document(_laughs(6).encode(), "yaml", origin="x").flat["f"]
    with pytest.raises(DocumentError, match="more than 1000000 nodes"):
        parse_document(_laughs(7).encode(), "yaml", origin="x")
