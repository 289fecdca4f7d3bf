"""Bad arguments to the publisher raise `InputError` and leave the server untouched (real Redis).

Hostile inputs (issue 8) used to raise raw Python errors (RecursionError, UnicodeEncodeError,
AttributeError, ValueError...) or, worse, to publish events no subscriber can decode.
"""

from __future__ import annotations

import decimal
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis

from hotreload import (
    AsyncPublisher,
    HotReloadError,
    InputError,
    ProtocolError,
    Publisher,
    Subscriber,
)
from hotreload.wire import DEFAULT_PREFIX, MAX_DEPTH, MAX_KEY_SEGMENTS, MAX_LEAF_DEPTH, unflatten
from tests.conftest import REDIS_URL, delete_keys, unique
from tests.integration.conftest import make_config

pytestmark = pytest.mark.integration

D = MAX_DEPTH  # a document, and a value checked before it is made leaves
L = MAX_LEAF_DEPTH  # a leaf's value (protocol §2)
S = MAX_KEY_SEGMENTS  # a key


def nested(levels: int, leaf: Any = 1, *, kind: str = "dict") -> Any:
    value = leaf
    for _ in range(levels):
        value = {"a": value} if kind == "dict" else [value]
    return value


# (id, call on an AsyncPublisher, text the message must hold)
Call = Callable[[AsyncPublisher], Awaitable[Any]]
CASES: list[tuple[str, Call, str]] = [
    ("nesting 10,000 dicts", lambda pub: pub.publish({"x": nested(10_000)}),
     f"x: nests more than {D} levels"),
    ("nesting 10,000 lists", lambda pub: pub.publish({"x": nested(10_000, kind="list")}),
     f"x: nests more than {D} levels"),
    ("replace nesting 10,000", lambda pub: pub.replace({"x": nested(10_000)}),
     f"nests more than {D} levels"),
    ("a leaf one level too deep", lambda pub: pub.publish({"a.b": nested(L + 1, kind="list")}),
     f"a.b: nests more than {L} levels"),
    ("key + value one segment too deep", lambda pub: pub.publish({"a.b": nested(S - 1)}),
     f"it has {S + 1} segments (at most {S})"),
    ("key deeper than the limit", lambda pub: pub.publish({".".join(["k"] * (S + 1)): 1}),
     f"it has {S + 1} segments (at most {S})"),
    ("surrogate in a value", lambda pub: pub.publish({"x": "a\ud800"}),
     "x: a string is not valid Unicode (lone surrogate)"),
    ("surrogate in a nested value", lambda pub: pub.publish({"x": {"y": ["ok", "\udfff"]}}),
     "x.y[1]: a string is not valid Unicode (lone surrogate)"),
    ("surrogate in a key", lambda pub: pub.publish({"k\ud800": 1}),
     "invalid settings key 'k\\ud800': it is not valid Unicode"),
    ("surrogate in a nested key", lambda pub: pub.replace({"x": {"k\ud800": 1}}),
     "x.'k\\ud800': a key is not valid Unicode (lone surrogate)"),
    ("surrogate in a key inside a list", lambda pub: pub.publish({"x": [{"k\ud800": 1}]}),
     "x[0].'k\\ud800': a key is not valid Unicode (lone surrogate)"),
    ("surrogate in a deleted key", lambda pub: pub.publish(delete=["k\ud800"]),
     "delete[0] 'k\\ud800' holds a lone surrogate"),
    ("surrogate in an invalidation key", lambda pub: pub.invalidate(["k\ud800"]),
     "keys[0] 'k\\ud800' holds a lone surrogate"),
    ("surrogate in a prefix", lambda pub: pub.invalidate(prefixes=["\ud800"]),
     "prefixes[0] '\\ud800' holds a lone surrogate"),
    ("surrogate in the source", lambda pub: pub.publish({"x": 2}, source="\ud800"),
     "source '\\ud800' holds a lone surrogate"),
    ("replace a list", lambda pub: pub.replace([1, 2]),  # type: ignore[arg-type]
     "the document must be a mapping of settings, not a list"),
    ("replace a string", lambda pub: pub.replace("a: 1"),  # type: ignore[arg-type]
     "the document must be a mapping of settings, not a str"),
    ("replace None", lambda pub: pub.replace(None),  # type: ignore[arg-type]
     "the document must be a mapping of settings, not None"),
    ("publish a list", lambda pub: pub.publish([("x", 1)]),  # type: ignore[arg-type]
     "changes must be a mapping of settings, not a list"),
    ("non-str key", lambda pub: pub.publish({1: 2}), "invalid settings key 1"),
    ("non-str nested key", lambda pub: pub.publish({"x": {1: 2}}),
     "x: object keys must be strings, not 1"),
    ("non-str key in a document", lambda pub: pub.replace({"x": {("t",): 2}}),
     "x: object keys must be strings, not a tuple"),
    ("a set", lambda pub: pub.publish({"x": {1, 2}}), "x: set is not a JSON value"),
    ("bytes", lambda pub: pub.publish({"x": [b"raw"]}), "x[0]: bytes is not a JSON value"),
    ("an object", lambda pub: pub.replace({"x": {"y": object()}}),
     "x.y: object is not a JSON value"),
    ("a Decimal", lambda pub: pub.publish({"x": decimal.Decimal("1.5")}),
     "x: Decimal is not a JSON value"),
    ("NaN", lambda pub: pub.publish({"x": float("nan")}), "x: nan is not valid JSON"),
    ("Infinity in a document", lambda pub: pub.replace({"x": [float("-inf")]}),
     "x[0]: -inf is not valid JSON"),
    ("an int too long to print", lambda pub: pub.publish({"x": 10 ** 5000}),
     "x: an integer of 16610 bits is too long for JSON text"),
    ("an int too long to print, nested", lambda pub: pub.replace({"x": {"y": [10 ** 5000]}}),
     "x.y[0]: an integer of 16610 bits is too long for JSON text"),
    ("a dotted key inside a value", lambda pub: pub.publish({"x": {"y.z": 1}}),
     "x: invalid settings key 'y.z'"),
    ("delete a string", lambda pub: pub.publish(delete="abc"),
     "delete must be a list of strings, not a str"),
    ("delete None", lambda pub: pub.publish(delete=None),  # type: ignore[arg-type]
     "delete must be a list of strings, not None"),
    ("delete a number", lambda pub: pub.publish(delete=[1]),  # type: ignore[list-item]
     "delete[0] must be a string, not 1"),
    ("delete a bad key", lambda pub: pub.publish(delete=["a..b"]), "invalid settings key 'a..b'"),
    ("invalidate a string", lambda pub: pub.invalidate("user:42"),
     "keys must be a list of strings, not a str"),
    ("invalidate a number", lambda pub: pub.invalidate([42]),  # type: ignore[list-item]
     "keys[0] must be a string, not 42"),
    ("invalidate everything='yes'", lambda pub: pub.invalidate(
        everything="yes"),  # type: ignore[arg-type]
     "everything must be True or False, not a str"),
    ("invalidate nothing", lambda pub: pub.invalidate(),
     "invalidate needs keys, prefixes or everything=True"),
    ("rollback to a string", lambda pub: pub.rollback("1"),  # type: ignore[arg-type]
     "rollback needs a version number, not a str"),
    ("rollback to a float", lambda pub: pub.rollback(1.0),  # type: ignore[arg-type]
     "rollback needs a version number, not a float"),
    ("rollback to True", lambda pub: pub.rollback(True), "rollback needs a version number, "
     "not a bool"),
    ("plan a rollback to None", lambda pub: pub.plan_rollback(None),  # type: ignore[arg-type]
     "rollback needs a version number, not None"),
    ("rollback expecting a string", lambda pub: pub.rollback(
        1, expected_version="1"),  # type: ignore[arg-type]
     "expected_version must be a version number, not a str"),
    ("rollback with a bad source", lambda pub: pub.rollback(1, source="\udc80"),
     "source '\\udc80' holds a lone surrogate"),
    ("a bad namespace", lambda pub: pub.publish({"x": 2}, namespace="bad ns"),
     "invalid namespace 'bad ns'"),
    ("a namespace not a str", lambda pub: pub.invalidate(
        everything=True, namespace=5),  # type: ignore[arg-type]
     "invalid namespace 5"),
    ("a source not a str", lambda pub: pub.publish({"x": 2}, source=5),  # type: ignore[arg-type]
     "source must be a string, not 5"),
]
IDS = [c[0] for c in CASES]


def server_state(client: redis.Redis, namespace: str) -> dict[bytes, Any]:
    """Every key of the namespace with its content."""
    out: dict[bytes, Any] = {}
    for key in client.scan_iter(match=f"{DEFAULT_PREFIX}:{{{namespace}}}:*"):
        kind = client.type(key)
        out[key] = client.hgetall(key) if kind == b"hash" else client.xrange(key)
    return out


@pytest.fixture
def namespace() -> Iterator[str]:
    ns = unique("input")
    yield ns
    delete_keys(f"{DEFAULT_PREFIX}:{{{ns}}}:*")


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(REDIS_URL)
    yield c
    c.close()


@pytest.mark.parametrize(("name", "call", "message"), CASES, ids=IDS)
async def test_bad_input_raises_input_error_and_changes_nothing(
    name: str, call: Call, message: str, namespace: str, client: redis.Redis
) -> None:
    async with AsyncPublisher(make_config(), namespace=namespace) as pub:
        await pub.publish({"x": 1, "keep": {"me": True}})
        before = server_state(client, namespace)
        with pytest.raises(InputError) as caught:
            await call(pub)
        assert message in str(caught.value)
        assert isinstance(caught.value, ProtocolError) and isinstance(caught.value, HotReloadError)
        assert "\n" not in str(caught.value) and len(str(caught.value)) < 300
        str(caught.value).encode("utf-8")  # safe to log anywhere
        assert server_state(client, namespace) == before
        # the publisher still works, from the state it had
        assert (await pub.publish({"x": 2})).version == 2


@pytest.mark.parametrize(("name", "call", "message"), CASES[:12], ids=IDS[:12])
async def test_bad_input_on_a_new_namespace_creates_nothing(
    name: str, call: Call, message: str, namespace: str, client: redis.Redis
) -> None:
    async with AsyncPublisher(make_config(), namespace=namespace) as pub:
        with pytest.raises(InputError) as caught:
            await call(pub)
    assert message in str(caught.value)
    assert server_state(client, namespace) == {}


def test_the_sync_facade_raises_the_same_errors(namespace: str, client: redis.Redis) -> None:
    with Publisher(make_config(), namespace=namespace) as pub:
        pub.publish({"x": 1})
        before = server_state(client, namespace)
        with pytest.raises(InputError, match=f"x: nests more than {D} levels"):
            pub.publish({"x": nested(10_000)})
        with pytest.raises(InputError, match="delete must be a list of strings, not a str"):
            pub.publish(delete="x")
        with pytest.raises(InputError, match="delete must be a list of strings, not None"):
            pub.publish(delete=None)  # type: ignore[arg-type]
        with pytest.raises(InputError, match="not a list"):
            pub.replace([1, 2])  # type: ignore[arg-type]
        with pytest.raises(InputError, match="lone surrogate"):
            pub.invalidate(["\ud800"])
        with pytest.raises(InputError, match="not a str"):
            pub.rollback("1")  # type: ignore[arg-type]
        assert server_state(client, namespace) == before


def test_bad_constructor_arguments_are_input_errors(namespace: str) -> None:
    with pytest.raises(InputError, match="source '\\\\ud800' holds a lone surrogate"):
        AsyncPublisher(make_config(), namespace=namespace, source="\ud800")
    with pytest.raises(InputError, match="origin must be a string, not 5"):
        AsyncPublisher(make_config(), namespace=namespace, origin=5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="invalid namespace"):
        Publisher(make_config(), namespace="no spaces")


def test_settings_exactly_at_the_depth_limit_are_published_and_read_back(
    namespace: str,
) -> None:
    """A key of 32 segments holding a value nesting 32 levels (a document of 64: protocol
    §2, §12)."""
    deepest = ".".join(["k"] * S)
    value = nested(L, kind="list")
    with Publisher(make_config(), namespace=namespace) as pub, \
            Subscriber(make_config(), namespace=namespace) as sub:
        result = pub.publish({deepest: value, "flat": value})
        sub.wait_for_version(result.version or 0)
        assert sub.as_dict() == unflatten({deepest: value, "flat": value})
        assert not pub.replace(pub.snapshot().settings).changed  # a document at the limit
