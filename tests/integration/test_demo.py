"""``hotreload demo --redis URL`` leaves no key of its namespace behind (real Redis)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest
import redis
from click.testing import CliRunner

from hotreload.cli import _register, cli
from hotreload.publisher import AsyncPublisher
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    logger = logging.getLogger("hotreload")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


def keys_of(ns: str) -> list[bytes]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return list(client.scan_iter(match=f"hotreload:{{{ns}}}*", count=1000))
    finally:
        client.close()


def namespace_in(output: str) -> str:
    found = re.search(r"follow namespace '(demo-[0-9a-f]+)'", output)
    assert found is not None, output
    return found.group(1)


def test_no_key_of_the_demo_namespace_remains() -> None:
    _register.register(cli)
    result = CliRunner().invoke(cli, ["demo", "--redis", REDIS_URL])
    assert result.exit_code == 0, result.output
    ns = namespace_in(result.stdout)
    assert f"$ hotreload publish -n {ns} " in result.stdout
    assert keys_of(ns) == []


@pytest.mark.parametrize(("error", "code"), [(RuntimeError("boom"), 1),
                                             (KeyboardInterrupt(), 130)])
def test_the_keys_go_on_an_error_or_ctrl_c_too(monkeypatch: pytest.MonkeyPatch,
                                               error: BaseException, code: int) -> None:
    seen: list[str] = []

    async def fail(self: AsyncPublisher, *args: object, **kwargs: object) -> None:
        seen.append(self.namespace)
        assert keys_of(self.namespace)  # the demo had written its keys by now
        raise error

    monkeypatch.setattr(AsyncPublisher, "invalidate", fail)  # the last step of the demo
    _register.register(cli)
    result = CliRunner().invoke(cli, ["demo", "--redis", REDIS_URL])
    assert result.exit_code == code, result.output
    (ns,) = seen
    assert keys_of(ns) == []
