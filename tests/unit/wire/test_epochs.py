"""epochs.py: epoch strings and their order (protocol §4.5)."""

from __future__ import annotations

import re

import pytest

from hotreload.errors import ProtocolError
from hotreload.wire import check_epoch, compare_epochs, epoch_ms, is_epoch, new_epoch
from hotreload.wire.values import MAX_SAFE_INT


def test_new_epochs_have_the_documented_form() -> None:
    e = new_epoch(now_ms=1764086400000)
    assert re.fullmatch(r"1764086400000-[0-9a-f]{16}", e)
    assert new_epoch(now_ms=5) != new_epoch(now_ms=5)
    assert epoch_ms(new_epoch()) > 1_700_000_000_000


def test_a_new_epoch_is_newer_than_the_one_it_follows() -> None:
    later = "9999999999999-0000000000000000"
    e = new_epoch(later, now_ms=1000)
    assert epoch_ms(e) == 10_000_000_000_000
    assert compare_epochs(e, later) == 1
    with pytest.raises(ProtocolError, match="out of range"):
        new_epoch(f"{MAX_SAFE_INT}-0000000000000000")


@pytest.mark.parametrize("bad", [
    "", "1-abc", "01-0123456789abcdef", "1-0123456789ABCDEF", "1-0123456789abcdef0",
    "-1-0123456789abcdef", f"{MAX_SAFE_INT + 1}-0123456789abcdef", "1_0-0123456789abcdef",
    " 1-0123456789abcdef", "1-0123456789abcdef\n",
    "\u0661-0123456789abcdef",  # an Arabic-Indic digit
])
def test_malformed_epochs(bad: str) -> None:
    assert not is_epoch(bad)
    with pytest.raises(ProtocolError, match="invalid epoch") as info:
        check_epoch(bad)
    assert info.value.reason == "field"
    with pytest.raises(ProtocolError):
        epoch_ms(bad)


def test_epochs_order_by_their_time_only() -> None:
    a, b = "1000-0000000000000001", "2000-0000000000000000"
    twin = "1000-ffffffffffffffff"
    assert compare_epochs(a, b) == -1 and compare_epochs(b, a) == 1
    assert compare_epochs(a, twin) == 0 and a != twin
    assert is_epoch("0-0123456789abcdef") and not is_epoch(5)
    assert check_epoch(a) == a
