"""Alertmanager configuration, built from `Settings.alertmanager`.

Valid for Alertmanager 0.25 (Debian's) and current releases: `matchers`,
`source_matchers` / `target_matchers`, and secrets only through `*_file`
fields, which Alertmanager resolves relative to the config file. Each
severity gets one route per receiver (all but the last with `continue`), so
`amtool config routes test severity=critical` lists every receiver it reaches.
"""

from __future__ import annotations

from devflow_monitor.core.settings import Settings

TEMPLATE_FILES = "templates/*.tmpl"  # alerting/templates/, beside alertmanager.yml
# Critical alerts that mean the instance is down, blind or has just crashed; while one fires, its warnings are
# noise (a crash writes a burst of fatal records). DevFlowServerCrashed resolves within its window.
OUTAGE_ALERTS = ("DevFlowExporterDown", "DevFlowExporterAbsent", "DevFlowProcessDown", "DevFlowServerCrashed",
                 "DevFlowDatabaseUnavailable")


def _slack(settings: Settings) -> dict:
    slack = settings.alertmanager.slack
    return {
        "api_url_file": slack.api_url_file,
        "channel": slack.channel,
        "send_resolved": slack.send_resolved,
        "color": '{{ template "devflow.slack.color" . }}',
        "title": '{{ template "devflow.title" . }}',
        "text": '{{ template "devflow.slack.text" . }}',
    }


def _email(settings: Settings) -> dict:
    email = settings.alertmanager.email
    config = {
        "to": email.to,
        "from": email.from_,
        "smarthost": email.smarthost,
        "require_tls": email.require_tls,
        "send_resolved": email.send_resolved,
        "headers": {"Subject": '{{ template "devflow.title" . }}'},
        "html": '{{ template "devflow.email.html" . }}',
        "text": '{{ template "devflow.email.text" . }}',
    }
    if email.auth_username:
        config["auth_username"] = email.auth_username
        config["auth_password_file"] = email.auth_password_file
    return config


def _receiver(settings: Settings, name: str) -> dict:
    if name == "slack":
        return {"name": name, "slack_configs": [_slack(settings)]}
    if name == "email":
        return {"name": name, "email_configs": [_email(settings)]}
    return {"name": name}  # "null": the alert stays visible in Alertmanager, nobody is notified


def _routes(settings: Settings) -> list[dict]:
    routes = []
    for severity, route in settings.alertmanager.routes.items():
        for position, receiver in enumerate(route.receivers):
            entry = {"matchers": [f'severity="{severity}"'], "receiver": receiver,
                     "repeat_interval": route.repeat_interval}
            if position < len(route.receivers) - 1:
                entry["continue"] = True
            routes.append(entry)
    return routes


def config(settings: Settings, *, templates: str = TEMPLATE_FILES) -> dict:
    am = settings.alertmanager
    used = [am.default_receiver] + [name for route in am.routes.values() for name in route.receivers]
    return {
        "global": {"resolve_timeout": am.resolve_timeout},
        "templates": [templates],
        "route": {
            "receiver": am.default_receiver,
            "group_by": list(am.group_by),
            "group_wait": am.group_wait,
            "group_interval": am.group_interval,
            "repeat_interval": am.repeat_interval,
            "routes": _routes(settings),
        },
        # A critical alert already says the target is broken; its warnings would only add noise.
        # Only outages inhibit: a lasting critical such as DevFlowEventsNotPersisted (the public build's
        # defect) must not silence an instance's disk, backup or error warnings for good.
        "inhibit_rules": [{
            "source_matchers": ['severity="critical"', f'alertname=~"{"|".join(OUTAGE_ALERTS)}"'],
            "target_matchers": ['severity="warning"'],
            "equal": ["instance"],
        }],
        "receivers": [_receiver(settings, name) for name in dict.fromkeys(used)],
    }
