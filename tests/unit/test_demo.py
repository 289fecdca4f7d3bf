"""``hotreload demo`` on the in-process memory server: honest timings, copyable commands."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from hotreload.cli import _register, cli


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    """The CLI (and the demo) configure the ``hotreload`` logger; give it back as it was."""
    logger = logging.getLogger("hotreload")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


def demo_output(*args: str) -> tuple[str, str]:
    """The demo's output and the namespace it says it uses."""
    _register.register(cli)
    result = CliRunner().invoke(cli, ["demo", *args])
    assert result.exit_code == 0, result.output
    found = re.search(r"follow namespace '(demo-[0-9a-f]+)'", result.stdout)
    assert found is not None, result.stdout
    return result.stdout, found.group(1)


@pytest.mark.parametrize("run", range(3))  # timings differ run to run: never one negative
def test_every_timing_is_positive(run: int) -> None:
    out, _ = demo_output("--pods", "4")
    times = [float(t) for t in re.findall(r"applied (?:in )?(-?[0-9.]+) ms", out)]
    assert len(times) == 8  # two valid publishes, four pods
    assert all(t > 0 for t in times), times
    assert "-0.00" not in out


def test_every_printed_command_names_the_namespace() -> None:
    out, ns = demo_output()
    commands = [line for line in out.splitlines() if line.startswith("$ ")]
    assert len(commands) == 4
    for line in commands:
        assert re.match(rf"\$ hotreload (publish|invalidate) -n {ns} ", line), line
