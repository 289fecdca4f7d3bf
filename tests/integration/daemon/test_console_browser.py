"""The console page in a real headless browser (Debian's chromium and chromium-driver, driven by
selenium; .ci/run installs them): a daemon process, subscribers in their own processes, one of
them held behind by its model. A missing browser fails the test, never skips it. The run leaves
a screenshot in docs/console.png (shown by the README and docs/daemon.md)."""

from __future__ import annotations

import base64
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_helpers import SECRETS, Subscribers, subscribers, write_settings
from daemon_helpers import ROOT, SpawnDaemon, WriteConfig, free_port, http_get, wait_for

from hotreload.publisher import Publisher

pytestmark = pytest.mark.integration

__all__ = ["subscribers"]  # the fixture, imported for the test below

SCREENSHOT = ROOT / "docs" / "console.png"
FAST = {"version_check_interval": 0.3, "heartbeat_interval": 0.5, "heartbeat_timeout": 1.5}
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--lang=en-US",
                "--window-size=1440,900")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail("chromium and chromium-driver are not installed (.ci/run installs them: "
                    "apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROME_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield drv
    finally:
        drv.quit()


SNAPSHOT = """
const text = (sel) => { const n = document.querySelector(sel); return n ? n.textContent : ""; };
const rows = (sel) => Array.from(document.querySelectorAll(sel));
return {
  namespaces: Object.fromEntries(rows("#namespaces tbody tr").map(
    (tr) => [tr.dataset.ns, tr.cells[1].textContent])),
  instances: rows("#instances tbody tr").map((tr) => [tr.dataset.instance, tr.dataset.state]),
  rollout: text("#rollout"),
  complete: document.querySelector("#rollout").dataset.complete || "",
  incomplete: document.querySelector("#chart-latency").dataset.incomplete || "",
  latency_chart: rows("#chart-latency svg circle").length,
  rate_bars: rows("#chart-rate svg rect").length,
  password: text('#settings tr[data-key="db.password"] td:nth-child(2)'),
  history: text("#history"),
};
"""


BACKGROUND = "return getComputedStyle(document.body).backgroundColor;"


def api(port: int, path: str) -> Any:
    status, body = http_get(port, path)
    assert status == 200, (path, status, body[:200])
    return json.loads(body)


def row_of(port: int, ns: str) -> dict[str, Any]:
    (row,) = [r for r in api(port, "/api/namespaces")["namespaces"] if r["namespace"] == ns]
    return row


def test_the_console_page(tmp_path: Path, uid: str, write_config: WriteConfig,
                          spawn: SpawnDaemon, subscribers: Subscribers, browser: Any) -> None:
    ns, extra = f"app-{uid}", f"ops-{uid}"
    settings = tmp_path / "settings.yaml"
    write_settings(settings, 10)
    port = free_port()
    path, config = write_config(
        subscriber=FAST, sources={"files": [{"path": str(settings), "namespace": ns}]},
        daemon={"http": f"127.0.0.1:{port}", "console": {"namespaces": [extra],
                                                         "poll_interval": 0.2}})
    daemon = spawn(path, cli=True)
    wait_for(lambda: http_get(port, "/readyz")[0] == 200, 20, "the daemon to be ready")
    wait_for(lambda: row_of(port, ns)["version"] == 1, 15, "v1 published")
    with Publisher(config, namespace=extra) as pub:
        pub.publish({"mode": "fast"})
    subs = [subscribers.start(path, ns, "api") for _ in range(2)]
    worker = subscribers.start(path, ns, "worker", max_limit=50)
    for version, limit in ((2, 20), (3, 30), (4, 100)):  # v4: the worker's model rejects it
        wait_for(lambda: row_of(port, ns)["instances"] == 3 and row_of(port, ns)["behind"] == 0,
                 15, f"every instance on v{version - 1}")
        write_settings(settings, limit)
        wait_for(lambda v=version: row_of(port, ns)["version"] == v, 15, f"v{version}")
    wait_for(lambda: row_of(port, ns)["behind"] == 1, 15, "the worker behind v4")
    wait_for(lambda: len(api(port, f"/api/namespaces/{ns}/propagation")["versions"][0][
        "applied"]) == 2, 15, "both api instances reporting v4")

    browser.get(f"http://127.0.0.1:{port}/#/ns/{ns}")

    def page() -> dict[str, Any]:
        """What the page shows, read at once (the page redraws its tables on every change)."""
        return dict(browser.execute_script(SNAPSHOT))

    wait_for(lambda: ns in page()["namespaces"], 10, "the namespace row")
    wait_for(lambda: len(page()["instances"]) == 3, 10, "three instances")
    shown = page()
    assert shown["instances"][0] == [worker.instance, "behind"]  # laggards first
    assert {i for i, state in shown["instances"][1:] if state == "ok"} == {
        s.instance for s in subs}
    assert shown["complete"] == "false" and "Rollout incomplete: 1 of 3" in shown["rollout"]
    assert shown["latency_chart"] and shown["rate_bars"] == 30
    assert shown["incomplete"] == "1"
    assert shown["password"].startswith("***")
    assert "limit: 30 -> 100" in shown["history"]
    assert shown["namespaces"][extra] == "v1"
    source = browser.page_source
    assert not [secret for secret in SECRETS if secret in source]

    # a publish shows within 2 s, without a reload
    browser.execute_script("window.hotreloadTestMarker = 42;")
    with Publisher(config, namespace=extra) as pub:
        pub.publish({"mode": "slow"})
        published = time.monotonic()
    wait_for(lambda: page()["namespaces"][extra] == "v2", 2.0,
             "the page to show v2 of the other namespace")
    assert time.monotonic() - published < 2.0
    assert browser.execute_script("return window.hotreloadTestMarker;") == 42

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []

    light = browser.execute_script(BACKGROUND)
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    dark = browser.execute_script(BACKGROUND)
    assert light != dark, "no dark mode"
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": "light"}]})

    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                 "scale": 1}})
    SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))
    assert SCREENSHOT.stat().st_size > 10_000
    assert daemon.proc.poll() is None
