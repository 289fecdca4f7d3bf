"""digest.py: checksums (protocol §3)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotreload.errors import ProtocolError
from hotreload.wire import EMPTY_CHECKSUM, Digester, LeafChange, diff_texts, fold, is_checksum
from hotreload.wire.digest import checksum_int, hmac_hex

from .strategies import SETTINGS, leaf_sets, leaf_texts, small_keys


def test_leaf_digest_is_sha256_or_hmac_of_key_nul_text() -> None:
    data = b"db.pool_size\x0020"
    assert Digester().leaf("db.pool_size", "20") == int(hashlib.sha256(data).hexdigest(), 16)
    keyed = hmac.new(b"k", data, hashlib.sha256).hexdigest()
    assert Digester(b"k").leaf("db.pool_size", "20") == int(keyed, 16)
    assert Digester(b"k").signed and not Digester().signed


def test_the_documented_example() -> None:
    leaves = {"db.pool_size": "20", "feature": "true"}
    assert Digester().checksum_of(leaves) == (
        "f580a622eb0374fdba395fc980f0c95e82e09d1dd905ef6156e8f9b800b1aa13")
    assert Digester(b"example-key").checksum_of(leaves) == (
        "e7d9f0f456e0ad4a7b0ec5946d5edaaa39fecc0e57ae5c02ee84578ec49e6d8f")
    assert Digester().checksum_of({}) == EMPTY_CHECKSUM == "0" * 64


def test_fold_and_format_helpers() -> None:
    d = Digester()
    assert fold([d.leaf("a", "1"), d.leaf("b", "2")]) == d.checksum_of({"a": "1", "b": "2"})
    assert fold([]) == EMPTY_CHECKSUM
    assert is_checksum("a" * 64) and not is_checksum("A" * 64) and not is_checksum("a" * 63)
    assert not is_checksum(None)
    with pytest.raises(ProtocolError, match="invalid checksum") as info:
        checksum_int("xyz")
    assert info.value.reason == "field"
    assert hmac_hex(b"k", b"d") == hmac.new(b"k", b"d", hashlib.sha256).hexdigest()


def test_advance_rejects_a_malformed_checksum() -> None:
    with pytest.raises(ProtocolError):
        Digester().advance("nope", [])


def test_checksums_ignore_order_and_see_every_text() -> None:
    d = Digester()
    assert d.checksum_of({"a": "1", "b": "2"}) == d.checksum_of({"b": "2", "a": "1"})
    assert d.checksum_of({"a": "1"}) != d.checksum_of({"a": "1.0"})
    assert d.checksum_of({"a": "1"}) != Digester(b"k").checksum_of({"a": "1"})


@SETTINGS
@given(st.sampled_from([None, b"k", b"example-key"]), leaf_sets,
       st.lists(st.dictionaries(small_keys, st.one_of(st.none(), leaf_texts), max_size=4),
                max_size=8))
def test_incremental_checksum_equals_from_scratch(key: bytes | None, start: dict[str, str],
                                                  steps: list[dict[str, str | None]]) -> None:
    """advance() over any change sequence gives what checksum_of() gives from scratch."""
    d = Digester(key)
    leaves = dict(start)
    checksum = d.checksum_of(leaves)
    for sets in steps:
        new = dict(leaves)
        for k, text in sets.items():
            if text is None:
                new.pop(k, None)
            else:
                new[k] = text
        checksum = d.advance(checksum, diff_texts(leaves, new))
        leaves = new
        assert checksum == d.checksum_of(leaves)


def test_advance_uses_the_changes_own_old_text() -> None:
    d = Digester()
    c = d.checksum_of({"a": "1"})
    # the checksum follows the texts the change names, whatever the subscriber holds
    assert d.advance(c, [LeafChange("a", "1", "2")]) == d.checksum_of({"a": "2"})
    assert d.advance(c, [LeafChange("a", "9", "2")]) != d.checksum_of({"a": "2"})
