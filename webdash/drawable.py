"""What the page in static/ can draw, checked against a dashboard's JSON.

Each set names what one part of the JavaScript handles; the five marked "JS registry" are also the
keys of an object in static/ (tests compare them), so this list cannot claim what the page lacks.
`undrawable()` lists what a dashboard uses beyond these sets: a new panel kind, unit or option added
in dashboards/ fails the test until the page learns it.
"""

from __future__ import annotations

import re

DRAWABLE: dict[str, frozenset[str]] = {
    # JS registry: RENDERERS in static/panels.js
    "panel type": frozenset({"row", "stat", "timeseries", "gauge", "bargauge", "state-timeline", "table"}),
    # JS registry: UNITS in static/format.js
    "unit": frozenset({"none", "short", "percentunit", "s", "dtdurations", "dateTimeFromNow", "bytes", "Bps",
                       "ops", "cps", "cpm", "reqps"}),
    # JS registry: MAPPINGS in static/format.js
    "value mapping": frozenset({"value"}),
    # JS registry: COLORS in static/format.js
    "color": frozenset({"green", "orange", "red", "blue", "yellow", "purple", "dark-red", "gray", "transparent"}),
    "color mode": frozenset({"thresholds", "palette-classic", "fixed"}),
    "thresholds mode": frozenset({"absolute"}),
    "query format": frozenset({"time_series", "table", "heatmap"}),
    "transformation": frozenset({"organize"}),
    # JS registry: MATCHERS in static/format.js
    "override matcher": frozenset({"byName", "byRegexp", "byFrameRefID"}),
    "override property": frozenset({"color", "mappings"}),
    "reduce calc": frozenset({"lastNotNull"}),
    "stat color mode": frozenset({"value", "background", "none"}),
    "stat graph mode": frozenset({"none", "area"}),
    "stat text mode": frozenset({"auto", "value", "name", "value_and_name"}),
    "bar gauge display mode": frozenset({"gradient", "basic"}),
    "bar gauge orientation": frozenset({"horizontal", "auto"}),
    "draw style": frozenset({"line", "bars"}),
    "stacking": frozenset({"none", "normal"}),
    "thresholds style": frozenset({"off", "line", "dashed"}),
    "variable": frozenset({"job", "instance", "datasource", "__rate_interval", "__interval", "__range"}),
}

VARIABLE = re.compile(r"\$\{?(\w+)")


def undrawable(board: dict) -> list[str]:
    """'panel title: kind value' for everything in `board` the page cannot draw; empty when all is fine."""
    found = []
    for panel in _panels(board.get("panels", [])):
        for kind, value in _features(panel):
            if value is not None and value not in DRAWABLE[kind]:
                found.append(f"{panel.get('title', '?')}: {kind} {value!r}")
    return found


def _panels(panels: list[dict]):
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _mapping_features(mappings: list[dict]):
    for mapping in mappings:
        yield "value mapping", mapping.get("type")
        for result in mapping.get("options", {}).values():
            yield "color", result.get("color") if isinstance(result, dict) else None


def _features(panel: dict):
    """(kind, value) for each choice a panel makes that the page has to honour."""
    yield "panel type", panel.get("type")
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    options = panel.get("options", {})
    custom = defaults.get("custom", {})
    if "fieldConfig" in panel:
        yield "unit", defaults.get("unit", "none")
    yield "color mode", defaults.get("color", {}).get("mode")
    thresholds = defaults.get("thresholds", {})
    yield "thresholds mode", thresholds.get("mode")
    for step in thresholds.get("steps", []):
        yield "color", step.get("color")
    yield from _mapping_features(defaults.get("mappings", []))
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        yield "override matcher", override.get("matcher", {}).get("id")
        for prop in override.get("properties", []):
            yield "override property", prop.get("id")
            if prop.get("id") == "color":
                yield "color mode", prop.get("value", {}).get("mode")
                yield "color", prop.get("value", {}).get("fixedColor")
            if prop.get("id") == "mappings":
                yield from _mapping_features(prop.get("value", []))
    for calc in options.get("reduceOptions", {}).get("calcs", []):
        yield "reduce calc", calc
    if panel.get("type") == "stat":
        yield "stat color mode", options.get("colorMode")
        yield "stat graph mode", options.get("graphMode")
        yield "stat text mode", options.get("textMode")
    if panel.get("type") == "bargauge":
        yield "bar gauge display mode", options.get("displayMode")
        yield "bar gauge orientation", options.get("orientation")
    if panel.get("type") == "timeseries":
        yield "draw style", custom.get("drawStyle")
        yield "stacking", custom.get("stacking", {}).get("mode")
        yield "thresholds style", custom.get("thresholdsStyle", {}).get("mode")
    for transformation in panel.get("transformations", []):
        yield "transformation", transformation.get("id")
    for target in panel.get("targets", []):
        yield "query format", target.get("format", "time_series")
        for name in VARIABLE.findall(target.get("expr", "")):
            yield "variable", name
