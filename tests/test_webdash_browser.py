"""The built-in web dashboards in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`) drives `devflow-monitor webdash` in front of the demo chain of test_webdash.py
(simulator with error_burst and outbox_backlog, a backup, two exporters, a real Prometheus).

Screenshots of the five dashboards go to $DEVFLOW_SCREENSHOTS when set (`make screenshots` points it
at docs/screenshots), else to the test's temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from conftest import free_port, requires
from devflow_monitor.dashboards import DASHBOARDS
from test_webdash import JSON_DIR, demo_stack  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.slow, requires("chromium", "chromedriver", "prometheus")]

WINDOW = (1600, 1000)
DATA_TIMEOUT_SECONDS = 120
SCREENSHOT_HISTORY_SECONDS = 180
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Panels a fault of this stack leaves empty on purpose: (dashboard uid, panel title) -> why. The stack
# turns on error_burst and outbox_backlog and takes a backup precisely so that no panel has to be here.
BLANK_BY_DESIGN: dict[tuple[str, str], str] = {}


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tempfile.mkdtemp(prefix='webdash-chromium-')}",
                                  f"--window-size={WINDOW[0]},{WINDOW[1]}"]:
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


def panel_states(driver) -> list[dict]:
    return driver.execute_script(
        "return [...document.querySelectorAll('.panel')].map(p => ({title: p.dataset.title, state: p.dataset.state,"
        " error: p.dataset.error || null, queries: JSON.parse(p.dataset.queries || '[]'),"
        " tiles: p.querySelectorAll('.tile').length}))")


def wait_for(driver, predicate, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate(driver)
        if value:
            return value
        if time.monotonic() > deadline:
            unlike = [(s["title"], s["state"], s["error"]) for s in panel_states(driver) if s["state"] != "data"]
            raise AssertionError(f"timed out after {timeout}s waiting for {message}; panels without data: {unlike}")
        time.sleep(0.5)


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def panels_in(uid: str) -> set[str]:
    name = uid.removeprefix("devflow-")
    board = json.loads((JSON_DIR / f"{name}.json").read_text())
    return {p["title"] for p in board["panels"] if p["type"] != "row"}


def screenshot(driver, path: Path) -> None:
    """The whole page, not only the window."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WINDOW[0], height + 200)  # the window's frame takes some of its height
    time.sleep(1.5)  # the page redraws its charts at the new size
    driver.save_screenshot(str(path))
    driver.set_window_size(*WINDOW)


@pytest.mark.parametrize("uid", [f"devflow-{name}" for name in DASHBOARDS])
def test_every_panel_shows_data_without_console_errors(browser, demo_stack, uid, tmp_path):
    browser.get_log("browser")  # start from an empty log
    browser.get(f"{demo_stack.url}/d/{uid}?from=now-15m&refresh=5s")
    expected = panels_in(uid) - {title for (board, title) in BLANK_BY_DESIGN if board == uid}

    def all_data(driver):
        states = panel_states(driver)
        return states if {s["title"] for s in states if s["state"] == "data"} >= expected else None

    states = wait_for(browser, all_data, DATA_TIMEOUT_SECONDS, f"every panel of {uid} to show data")
    assert {s["title"] for s in states} == panels_in(uid)
    if os.environ.get("DEVFLOW_SCREENSHOTS"):
        # For the README: a few minutes of history, so the charts show lines rather than a sliver.
        time.sleep(max(0.0, SCREENSHOT_HISTORY_SECONDS - (time.monotonic() - demo_stack.started)))
        browser.refresh()
        wait_for(browser, all_data, DATA_TIMEOUT_SECONDS, f"every panel of {uid} to show data again")
    directory = Path(os.environ.get("DEVFLOW_SCREENSHOTS") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    screenshot(browser, directory / f"{uid.removeprefix('devflow-')}.png")
    assert console_errors(browser) == []
    assert browser.find_element("id", "alerts").get_attribute("data-state") == "firing"


def choose(driver, select_id: str, value: str) -> None:
    """Pick `value` once the page offers it (variable values arrive from Prometheus)."""
    from selenium.webdriver.support.ui import Select

    option = f'#{select_id} option[value="{value}"]'
    wait_for(driver, lambda d: d.find_elements("css selector", option), 30, f"{value} in {select_id}")
    Select(driver.find_element("id", select_id)).select_by_value(value)


def queries_of(driver, title: str) -> list[dict]:
    return next(s["queries"] for s in panel_states(driver) if s["title"] == title)


def test_time_range_picker_and_instance_filter_change_the_queries(browser, demo_stack):
    browser.get(f"{demo_stack.url}/d/devflow-overview?from=now-15m&refresh=5s")
    memory = "Memory used"  # one stat tile per instance
    both = wait_for(browser, lambda d: next((s for s in panel_states(d) if s["title"] == memory and s["tiles"] == 2),
                                            None), 60, "a Memory used tile per exporter")
    before = both["queries"][0]
    assert before["end"] - before["start"] == pytest.approx(900, abs=2 * before["step"])
    assert 'instance=~".+"' in before["expr"]

    choose(browser, "range", "7d")
    week = wait_for(browser, lambda d: [q for q in queries_of(d, memory) if q["end"] - q["start"] > 86400], 30,
                    "queries over 7 days")[0]
    assert week["end"] - week["start"] == pytest.approx(7 * 86400, abs=2 * week["step"])
    assert week["step"] > before["step"]  # Grafana's $__interval grows with the range
    assert "from=now-7d" in browser.current_url

    chosen = demo_stack.instances[1]
    choose(browser, "var-instance", chosen)
    escaped = chosen.replace(".", "\\\\.")  # Grafana's regex escape inside a PromQL string
    one = wait_for(browser, lambda d: next((s for s in panel_states(d) if s["title"] == memory and s["tiles"] == 1
                                            and f'instance=~"{escaped}"' in s["queries"][0]["expr"]), None), 30,
                   f"the Memory used panel filtered to {chosen}")
    assert one["state"] == "data"
    assert f"var-instance={chosen}" in browser.current_url.replace("%3A", ":")
    assert console_errors(browser) == []


def test_prometheus_down_each_panel_says_so_then_recovers_and_a_bad_query_stays_on_its_panel(
        browser, demo_stack, tmp_path):
    dashboards = tmp_path / "dashboards"
    shutil.copytree(JSON_DIR, dashboards)
    board = json.loads((dashboards / "overview.json").read_text())
    broken = next(p for p in board["panels"] if p["title"] == "CPU")
    broken["targets"][0]["expr"] = "sum(" + broken["targets"][0]["expr"]
    (dashboards / "overview.json").write_text(json.dumps(board))
    port = free_port()
    url = demo_stack.webdash("--dashboards", str(dashboards), prometheus=f"http://127.0.0.1:{port}", name="webdash-down")

    browser.get(f"{url}/d/devflow-overview?from=now-15m&refresh=off")
    titles = panels_in("devflow-overview")
    states = wait_for(browser, lambda d: (s := panel_states(d)) and all(p["state"] == "down" for p in s) and s, 30,
                      "every panel to say Prometheus is down")
    assert {s["title"] for s in states} == titles
    assert all(f"127.0.0.1:{port} is unreachable" in s["error"] for s in states)
    assert "is unreachable" in browser.find_element("css selector", ".panel .message.down").text

    demo_stack.start_prometheus(port, demo_stack.prometheus_config)

    # Auto-refresh is off: the page retries by itself while Prometheus is down, and stops once it answers.
    wait_for(browser, lambda d: all(s["state"] != "down" for s in panel_states(d)), 60,
             "the panels to leave the down state without a reload")

    def recovered(driver):
        found = {s["title"]: s for s in panel_states(driver)}
        if all(s["state"] == "data" for title, s in found.items() if title != "CPU"):
            return found
        driver.find_element("id", "refresh-now").click()  # the new Prometheus is still gathering data
        time.sleep(2)
        return None

    found = wait_for(browser, recovered, DATA_TIMEOUT_SECONDS, "the panels to show the new Prometheus' data")
    assert found["CPU"]["state"] == "error"
    assert "parse error" in found["CPU"]["error"]
    cpu_text = browser.find_element("css selector", '.panel[data-title="CPU"] .message').text
    assert cpu_text.startswith("Query error:") and "parse error" in cpu_text
    # The failed requests show as network messages (502, then 400 for the bad query), never as script errors.
    assert all("Failed to load resource" in message for message in console_errors(browser))
