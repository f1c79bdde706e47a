"""`python -m mixin.build`: write the generated parts of mixin.libsonnet.

    python -m mixin.build            # regenerate mixin/*.libsonnet
    python -m mixin.build --check    # exit 1 if they are stale

The rules are written once, in alerting/rules.py. To turn them into Jsonnet that reads `$._config`
when it is evaluated, they are rendered from settings whose every mixin-configurable value is a
stand-in (mixin/placeholders.py) instead of a value: a stand-in goes into the rendered text as the
Jsonnet expression that reads it (`c.alerts.DevFlowHighCpuUsage.threshold`), arithmetic on it
(`ratio * 100`, `seconds(window)`) builds a bigger expression, formatting it (`:.6g`, `number()`)
becomes the Jsonnet that prints the same text (mixin/lib.libsonnet), and any other use is refused.
mixin/rulefiles.py writes each rendered text as a Jsonnet template of its literal parts and values.

Generated:
- mixin/config.libsonnet: `_config` with the defaults of core/settings.py (selector, rate
  window, error levels, every alert's threshold, window, `for`, severity, enabled), plus the
  dashboard tags and folder, each field under a comment made from its docstring (mixin/fielddocs.py);
- mixin/alerts.libsonnet, mixin/rules.libsonnet: `prometheusAlerts`, `prometheusRules`;
- mixin/dashboards.libsonnet: every dashboard of dashboards/json/ (Jsonnet cannot glob).
What is not in `_config` (`app.expect_listener`, Alertmanager) is changed through the Python build.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
from pathlib import Path

import yaml

from devflow_monitor.alerting import rules
from devflow_monitor.core.settings import Settings, apply, to_dict
from devflow_monitor.dashboards import DASHBOARDS
from devflow_monitor.dashboards.grafana import TAGS
from devflow_monitor.generate.committed import sync
from mixin.fielddocs import field_doc
from mixin.jsonnet import INDENT, field_name, member, value
from mixin.placeholders import Number, Registry, TemplateError, Text
from mixin.rulefiles import CONFIG, HEADER, alerts_libsonnet, rules_libsonnet

MIXIN_DIR = Path(__file__).resolve().parent
ROOT = MIXIN_DIR.parent
PROVIDERS = ROOT / "dashboards" / "provisioning" / "dashboards"
DASHBOARD_DOCS = {
    "dashboardTags": "The tags of every dashboard; each dashboard's links list the dashboards with these tags.",
    "grafanaDashboardFolder": "The Grafana folder the dashboards are provisioned into.",
}

def config_path(*keys: str) -> str:
    """`c.alerts.DevFlowX['for']`: a Jsonnet reference into `_config` (bound to `c` in the generated files)."""
    code = CONFIG
    for key in keys:
        code = member(code, key)
    return code


def reference(value, registry: Registry, *keys: str):
    """The stand-in for a default value of `_config`; booleans stay values (see `enabled`)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return Text(config_path(*keys), keys[-1], registry)
    return Number(config_path(*keys), keys[-1], registry, whole=isinstance(value, int))


def referenced_settings(defaults: Settings) -> tuple[Settings, dict, Registry]:
    """The settings with every mixin-configurable value a stand-in, those values' defaults as
    `_config`, and the registry of the stand-ins' expressions."""
    registry = Registry()
    marked = copy.deepcopy(defaults)
    plain = to_dict(defaults)
    config = {"selector": defaults.selector, "rate_window": defaults.rate_window,
              "runbook_url": defaults.runbook_url, "app": {"error_levels": defaults.app.error_levels},
              "alerts": {name: plain["alerts"][name] for name in defaults.alerts}}
    marked.selector = reference(defaults.selector, registry, "selector")
    marked.rate_window = reference(defaults.rate_window, registry, "rate_window")
    marked.app.error_levels = reference(defaults.app.error_levels, registry, "app", "error_levels")
    for name, alert in marked.alerts.items():
        for f in dataclasses.fields(alert):
            if f.name != "enabled":  # Jsonnet filters disabled alerts; the rule itself does not change
                setattr(alert, f.name, reference(getattr(alert, f.name), registry, "alerts", name,
                                                 f.name.rstrip("_")))
    return marked, config, registry


# --- _config --------------------------------------------------------------------------------

def alert_summaries(defaults: Settings) -> dict[str, str]:
    """Each alert's summary annotation, for every alert `defaults` knows (enabled or not)."""
    every = apply(defaults, {"app": {"expect_listener": True},
                             "alerts": {name: {"enabled": True} for name in defaults.alerts}})
    return {name: rule.summary for name, rule in rules.active_alerts(every).items()}


def describer(defaults: Settings):
    """path of a `_config` field -> the one-line comment above it."""
    summaries = alert_summaries(defaults)

    def describe(path: tuple[str, ...]) -> str:
        if path[0] in DASHBOARD_DOCS:
            return DASHBOARD_DOCS[path[0]]
        item, doc = defaults, ""
        for key in path:
            if isinstance(item, dict):
                item, doc = item[key], summaries[key]
            else:
                name = key if hasattr(item, key) else f"{key}_"  # `for` is `for_` in Python
                item, doc = getattr(item, name), field_doc(type(item), name)
        return doc
    return describe


def commented_fields(config: dict, describe, path: tuple[str, ...], indent: str) -> list[str]:
    """One field per line, each under its `//` comment; a blank line around each nested object."""
    lines = []
    for index, (key, item) in enumerate(config.items()):
        nested = isinstance(item, dict)
        if index and (nested or isinstance(list(config.values())[index - 1], dict)):
            lines.append("")
        lines.append(f"{indent}// {describe((*path, key))}")
        if nested:
            lines += [f"{indent}{field_name(key)}: {{",
                      *commented_fields(item, describe, (*path, key), indent + INDENT), f"{indent}}},"]
        else:
            lines.append(f"{indent}{field_name(key)}: {value(item, indent)},")
    return lines


def config_libsonnet(defaults: Settings, config: dict) -> str:
    fields = commented_fields({**config, **dashboard_defaults()}, describer(defaults), (), "    ")
    return "\n".join([HEADER.format(source="core/settings.py, alerting/rules.py and dashboards/").rstrip("\n"), "{",
                      "  _config+:: {", *fields, "  },", "}", ""])


# --- dashboards -----------------------------------------------------------------------------

def dashboard_defaults() -> dict:
    folder = next((provider["folder"] for path in sorted(PROVIDERS.glob("*.yml"))
                   for provider in yaml.safe_load(path.read_text(encoding="utf-8"))["providers"]), "DevFlow")
    return {"dashboardTags": TAGS, "grafanaDashboardFolder": folder}


def dashboards_libsonnet() -> str:
    lines = [HEADER.format(source="dashboards/json/").rstrip("\n"), "{"]
    lines += [f"  'devflow-{name}.json': import '../dashboards/json/{name}.json'," for name in DASHBOARDS]
    lines += ["}", ""]
    return "\n".join(lines)


def render(defaults: Settings | None = None) -> dict[str, str]:
    """File name inside mixin/ -> text."""
    defaults = defaults or Settings()
    marked, config, registry = referenced_settings(defaults)
    files = rules.rule_files(marked)
    return {
        "config.libsonnet": config_libsonnet(defaults, config),
        "alerts.libsonnet": alerts_libsonnet(files["alerts.yml"]["groups"], registry),
        "rules.libsonnet": rules_libsonnet(files["recording.yml"]["groups"], registry),
        "dashboards.libsonnet": dashboards_libsonnet(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mixin.build", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the files are stale")
    args = parser.parse_args(argv)
    try:
        files = render()
    except TemplateError as exc:
        print(f"mixin.build: error: {exc}", file=sys.stderr)
        return 2
    return sync(files, MIXIN_DIR, check=args.check, remake="make rules")


if __name__ == "__main__":
    sys.exit(main())
