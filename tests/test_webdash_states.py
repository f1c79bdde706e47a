"""The built-in web dashboards over a stand-in started the public build's way, in headless Chromium.

The chain: `devflow-monitor serve` and a real Prometheus start first, while the database does not exist
yet; then `devflow-monitor simulate --listen none --fault stop_writing` (no HTTP endpoint, no event ever
stored) runs in `<workdir>/data/devflow.db`, beside a log file with a record of every level; later its
client stops it. `webdash` serves the dashboards rendered from the default settings, and a second one
from settings with `app.expect_listener: true`.

test_dashboards_states.py checks the same states on the Grafana JSON; these check that the page draws
them: one Database tile, "no HTTP endpoint: stdio build" in blue, "no requests", 0 events, the log
levels' colours from the overrides, and "not running" once the server is gone.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.parse
import urllib.request

import pytest
import yaml

from conftest import free_port, requires, wait_for_http
from devflow_monitor.core import catalog
from devflow_monitor.core.logformat import LEVELS
from devflow_monitor.dashboards import states
from test_webdash import Stack
from test_webdash_browser import browser, wait_for  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.slow, requires("chromium", "chromedriver", "prometheus")]

MONITOR = [sys.executable, "-m", "devflow_monitor.cli"]
TIMEOUT_SECONDS = 60
# Grafana's named colours (dark theme), as the page draws them.
RGB = {"green": "rgb(115, 191, 105)", "red": "rgb(242, 73, 92)", "dark-red": "rgb(196, 22, 42)",
       "yellow": "rgb(250, 222, 42)", "orange": "rgb(255, 152, 48)", "blue": "rgb(87, 148, 242)",
       "gray": "rgb(128, 128, 128)"}
LEVEL_LINES = ["[FATAL] the server cannot go on", "[ERROR][GitMonitor] Error processing commit",
               "[WARN] slow query", "[INFO][FileMonitor] Monitor started", "[DEBUG] File event: file:change",
               "Running migration 1..."]


class StdioStack(Stack):
    simulator = None
    expecting: str = ""  # the webdash whose settings expect a listener

    def value(self, expr: str) -> float | None:
        """The instant value of `expr` in Prometheus (the first series), None when empty."""
        url = f"{self.prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        with urllib.request.urlopen(url, timeout=10) as response:
            result = json.loads(response.read())["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def wait_for_value(self, expr: str, expected: float, what: str) -> None:
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while self.value(expr) != expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what} ({expr} = {expected})")
            time.sleep(0.5)


@pytest.fixture(scope="module")
def stdio_stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stdio-stack")
    stack = StdioStack(tmp)
    work, logs = tmp / "work", tmp / "work" / "logs"
    logs.mkdir(parents=True)
    (logs / "levels.log").write_text("\n".join(LEVEL_LINES) + "\n")
    database, pidfile, nobody = work / "data" / "devflow.db", tmp / "devflow.pid", free_port()
    config = tmp / "exporter.yml"
    config.write_text(yaml.safe_dump({"collectors": {
        "process": {"scan_interval_seconds": 0.5},
        "database": {"counts_interval_seconds": 1, "integrity_interval_seconds": 2},
        "logs": {"state_file": str(tmp / "log-offsets.json"), "poll_interval_seconds": 0.5},
        "probe": {"interval_seconds": 0, "timeout_seconds": 1}}}))
    exporter = f"127.0.0.1:{free_port()}"
    prometheus_config = tmp / "prometheus.yml"
    prometheus_config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "devflow", "static_configs": [{"targets": [exporter]}]}]}))
    expect_listener = tmp / "expect-listener.yml"
    expect_listener.write_text(yaml.safe_dump({"app": {"expect_listener": True}}))
    try:
        stack.start([*MONITOR, "serve", "--config.file", str(config), "--web.listen-address", exporter,
                     "--devflow.database", str(database), "--devflow.pidfile", str(pidfile),
                     # Nothing listens there: the public build serves no HTTP.
                     "--devflow.url", f"http://127.0.0.1:{nobody}", "--devflow.port", str(nobody),
                     "--devflow.log-files", str(logs / "*.log")], "serve")
        wait_for_http(f"http://{exporter}/metrics")
        stack.prometheus_config = prometheus_config
        stack.prometheus = stack.start_prometheus(free_port(), prometheus_config)
        # Missing for 6 scrapes: longer than the page's step, so a range query cannot miss it.
        stack.wait_for_value(f'clamp_max(sum_over_time({catalog.DB_STATE.name}{{state="missing"}}[1m]), 6)', 6,
                             "the database to be missing a while")
        stack.simulator = stack.start([*MONITOR, "simulate", "--database", str(database), "--listen", "none",
                                       "--log-dir", str(logs), "--pidfile", str(pidfile), "--rate", "5",
                                       "--fault", "stop_writing"], "simulate")
        stack.wait_for_value(catalog.PROCESS_UP.name, 1, "the server to run")
        stack.wait_for_value(catalog.DB_UP.name, 1, "the database to be readable")
        with open(logs / "levels.log", "a") as log:  # more records, so the level rates are not all 0
            log.write("\n".join(LEVEL_LINES) + "\n")
        stack.url = stack.webdash()
        stack.expecting = stack.webdash("--settings", str(expect_listener), name="webdash-expecting")
        yield stack
    finally:
        stack.stop()


def open_board(driver, url: str, uid: str) -> None:
    driver.get(f"{url}/d/{uid}?from=now-15m&refresh=off")


def panel(driver, title: str) -> dict | None:
    """A panel once it has drawn: its state, message, tiles (text and colours) and legend (label, colour)."""
    return driver.execute_script("""
        const node = document.querySelector(`.panel[data-title="${arguments[0]}"]`);
        if (!node || node.dataset.state === "loading") return null;
        return {state: node.dataset.state, message: node.querySelector(".message")?.innerText || null,
                tiles: [...node.querySelectorAll(".tile")].map((t) => ({text: t.innerText.trim(),
                        background: t.style.background, color: t.style.color})),
                bars: [...node.querySelectorAll(".bar-name")].map((b) => [b.innerText,
                        b.nextElementSibling.nextElementSibling.innerText]),
                legend: [...node.querySelectorAll(".u-legend .u-series")].map((s) => [
                        s.querySelector(".u-label")?.innerText,
                        getComputedStyle(s.querySelector(".u-marker") || s).borderColor])};
    """, title)


def drawn(driver, title: str, check) -> dict:
    """The panel once `check(panel)` holds, clicking Refresh while the data is on its way."""
    def ready(d):
        found = panel(d, title)
        if found and check(found):
            return found
        for button in d.find_elements("id", "refresh-now"):  # none until the page has drawn its header
            button.click()
        time.sleep(1)
        return None

    return wait_for(driver, ready, TIMEOUT_SECONDS, f"the {title!r} panel")


def test_database_tile_shows_only_the_state_now(browser, stdio_stack):
    open_board(browser, stdio_stack.url, "devflow-overview")
    database = drawn(browser, "Database", lambda p: p["state"] == "data")
    # Missing for the first seconds of the range, ok since: one tile, ok, in green.
    assert [(t["text"], t["background"]) for t in database["tiles"]] == [("ok", RGB["green"])]


def test_response_time_without_an_answer_says_no_requests(browser, stdio_stack):
    open_board(browser, stdio_stack.url, "devflow-overview")
    tile = drawn(browser, "Response time", lambda p: p["state"] != "loading")
    assert (tile["state"], tile["message"]) == ("nodata", states.NO_REQUESTS)


def test_no_events_stored_shows_zero(browser, stdio_stack):
    open_board(browser, stdio_stack.url, "devflow-activity")
    stored = drawn(browser, "Events stored", lambda p: p["state"] == "data")
    assert [t["text"] for t in stored["tiles"]] == ["0"]
    by_type = drawn(browser, "Events stored by type", lambda p: p["state"] == "data")
    assert by_type["bars"] == [[states.NONE, "0"]]


@pytest.mark.parametrize(("expecting", "text", "colour"), [(False, states.NO_ENDPOINT, "blue"),
                                                           (True, "no listener", "red")])
def test_no_listener_is_blue_for_the_stdio_build_and_red_where_one_is_expected(browser, stdio_stack, expecting,
                                                                                text, colour):
    open_board(browser, stdio_stack.expecting if expecting else stdio_stack.url, "devflow-errors")
    probe = drawn(browser, "Probe", lambda p: len(p["tiles"]) == 2)
    assert {(t["text"].splitlines()[-1], t["background"]) for t in probe["tiles"]} == {(text, RGB[colour])}


def test_log_levels_take_their_colours_from_the_overrides(browser, stdio_stack):
    open_board(browser, stdio_stack.url, "devflow-errors")
    levels = drawn(browser, "Log records by level", lambda p: {label for label, _ in p["legend"]} >= set(LEVELS))
    colours = {label: colour for label, colour in levels["legend"] if label in LEVELS}
    assert colours == {"fatal": RGB["dark-red"], "error": RGB["red"], "warn": RGB["yellow"], "info": RGB["green"],
                       "debug": RGB["blue"], "unknown": RGB["gray"]}


# Last: it stops the server.
def test_process_tiles_say_not_running_after_the_client_stops_the_server(browser, stdio_stack):
    open_board(browser, stdio_stack.url, "devflow-overview")
    for title in ("Uptime", "Memory used", "CPU"):
        running = drawn(browser, title, lambda p: p["state"] == "data")
        assert running["tiles"][0]["text"] != states.NOT_RUNNING
    stdio_stack.simulator.terminate()
    stdio_stack.simulator.wait(10)
    stdio_stack.wait_for_value(catalog.PROCESS_UP.name, 0, "the exporter to see the server gone")
    for title in ("Uptime", "Memory used", "CPU"):
        stopped = drawn(browser, title, lambda p: [t["text"] for t in p["tiles"]] == [states.NOT_RUNNING])
        tile = stopped["tiles"][0]
        assert RGB["blue"] in (tile["background"], tile["color"]), (title, tile)
