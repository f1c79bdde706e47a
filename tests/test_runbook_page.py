"""The runbook served by the exporter at /runbook, and the alerts' absolute runbook_url links into it."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

import yaml

from conftest import ROOT, http_get

from devflow_monitor.core.settings import Settings
from devflow_monitor.exporter import runbook
from devflow_monitor.core.config import WebConfig


class Anchors(HTMLParser):
    """The ids a browser can scroll to, and the in-page links (#...) the page makes."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.links: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a" and (attrs.get("href") or "").startswith("#"):
            self.links.add(attrs["href"][1:])


def test_every_generated_alert_links_to_a_section_of_the_runbook_the_exporter_serves(tmp_path, start_exporter):
    exporter = start_exporter("--devflow.database", str(tmp_path / "devflow.db"))
    status, landing = http_get(exporter.url + "/")
    assert status == 200 and f"href='{runbook.PATH}'" in landing
    status, page = http_get(exporter.url + runbook.PATH)
    assert status == 200
    anchors = Anchors()
    anchors.feed(page)

    rules = yaml.safe_load((ROOT / "alerting" / "rules" / "alerts.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]
    assert alerts
    for rule in alerts:
        url = urlsplit(rule["annotations"]["runbook_url"])
        assert url.scheme in ("http", "https") and url.netloc, f"{rule['alert']}: {url.geturl()} is not absolute"
        assert url.path == runbook.PATH
        assert url.fragment == rule["alert"].lower() and url.fragment in anchors.ids, \
            f"{rule['alert']}: the served runbook has no section #{url.fragment}"
    assert anchors.links <= anchors.ids, "every in-page link of the runbook leads somewhere"
    assert "<pre><code>devflow-monitor doctor" in page, "command examples stay verbatim"


def test_default_runbook_url_points_at_the_exporters_default_address():
    url = urlsplit(Settings().runbook("DevFlowProcessDown"))
    assert (url.scheme, url.netloc, url.path, url.fragment) == (
        "http", WebConfig().listen_address, runbook.PATH, "devflowprocessdown")
