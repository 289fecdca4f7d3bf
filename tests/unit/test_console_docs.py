"""The console's docs stay true: every setting and every route is documented, the screenshot
the docs show exists, and the page ships in the package."""

from __future__ import annotations

from pathlib import Path

from hotreload.config import ConsoleSettings
from hotreload.daemon.http import Console, create_app
from hotreload.daemon.http.page import ASSETS
from hotreload.transport import MemoryServer, MemoryTransport
from tests.unit.memory_fixtures import config
from tests.unit.test_daemon_health import FakeDaemon

ROOT = Path(__file__).resolve().parents[2]
DAEMON_DOC = (ROOT / "docs" / "daemon.md").read_text()
CONFIG_DOC = (ROOT / "docs" / "configuration.md").read_text()
README = (ROOT / "README.md").read_text()


def test_every_console_key_is_documented() -> None:
    for name in ConsoleSettings.model_fields:
        assert f"    {name}:" in DAEMON_DOC, name  # in the YAML example
        assert f"| `{name}` |" in CONFIG_DOC, name


def test_every_console_route_is_documented() -> None:
    console = Console(config(), MemoryTransport(MemoryServer(), prefix="hotreload"))
    app = create_app(FakeDaemon(), console)
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    for path in paths - {"/healthz", "/readyz", "/metrics", *ASSETS}:
        assert f"`GET {path}`" in DAEMON_DOC, path


def test_the_screenshot_is_shown() -> None:
    assert (ROOT / "docs" / "console.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](console.png)" in DAEMON_DOC
    assert "(docs/console.png)" in README


def test_the_page_ships_in_the_package() -> None:
    import hotreload.daemon.http as http

    static = Path(http.__file__).parent / "static"
    assert sorted(p.name for p in static.iterdir()) == sorted(n for n, _ in ASSETS.values())
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'packages = ["hotreload"]' in pyproject  # hatch puts every file of it in the wheel
    assert "exclude" not in pyproject.partition("[tool.hatch.build")[2].partition("\n[tool.py")[0]
