"""How the panels show the public build's normal states as normal (docs/devflow.md):

- a server its MCP client has stopped: panels of a running process say "not running", in blue, instead of
  keeping their last value (`while_running`);
- no HTTP endpoint: the probe and port queries give "nothing listens" its own value, NO_LISTENER, which
  `listener_mapping` shows as "no HTTP endpoint: stdio build" in blue while `app.expect_listener` is false
  (the stdio build), and as "no listener" in red where a listener is expected;
- a readable database without events: 0, the number the build's storage defect is about, not "No data"
  (`zero_while_readable`);
- no answer, no latency: a response time only where an endpoint answered or requests were logged
  (`answered_probes`, `answered_requests`).
"""

from __future__ import annotations

import attr
from grafanalib import core as g

from devflow_monitor.core import catalog
from devflow_monitor.core.settings import Settings
from devflow_monitor.dashboards.grafana import rate, series, target

NOT_RUNNING = "not running"
NO_ENDPOINT = "no HTTP endpoint: stdio build"
# The value the listener panels give "nothing listens": not 0 or 1 (failed, ok) and below 100, so never
# an HTTP status either.
NO_LISTENER = 2
PROBE = "job, instance, endpoint"  # the labels that name one probe
NO_LISTENER_STATE = 'state="no_listener"'
FAILING_STATES = 'state!~"ok|no_listener"'
NO_REQUESTS = "no requests"


# --- a stopped server ------------------------------------------------------------------------
def running(expr: str) -> str:
    """`expr` while the server runs; nothing for an instance whose server is not running. Matched on
    instance alone: the panels' sums keep only that label."""
    return f"({expr}) and on (instance) ({series(catalog.PROCESS_UP)} == 1)"


def while_running(panel: g.Stat | g.GaugePanel) -> g.Stat | g.GaugePanel:
    """The panel's queries only while the server runs, plus one that is 0 for each instance whose server is
    not running, mapped to "not running" in blue: a stopped server has no uptime, memory or CPU now, and
    its last values are history, not the present."""
    targets = [attr.evolve(t, expr=running(t.expr)) for t in panel.targets]
    stopped = attr.evolve(target(f"{series(catalog.PROCESS_UP)} == 0", panel.targets[0].legendFormat, instant=True),
                          refId=chr(ord("A") + len(targets)))
    override = {"matcher": {"id": "byFrameRefID", "options": stopped.refId},
                "properties": [{"id": "mappings", "value": _mapping(0, NOT_RUNNING, "blue")},
                               {"id": "color", "value": {"mode": "fixed", "fixedColor": "blue"}}]}
    if isinstance(panel, g.Stat):
        return attr.evolve(panel, targets=targets + [stopped], overrides=[*panel.overrides, override])
    # grafanalib's gauge has no overrides of its own: they go in through its extra JSON.
    extra = dict(panel.extraJson or {})
    field_config = dict(extra.get("fieldConfig", {}))
    field_config["overrides"] = [*field_config.get("overrides", []), override]
    return attr.evolve(panel, targets=targets + [stopped], extraJson={**extra, "fieldConfig": field_config})


def _mapping(value: float, text: str, colour: str) -> list[dict]:
    return [{"type": "value", "options": {str(value): {"text": text, "color": colour, "index": 0}}}]


# --- no HTTP endpoint ------------------------------------------------------------------------------
def listener_mapping(settings: Settings) -> tuple[float, str, str]:
    """The (value, text, colour) of NO_LISTENER: blue for the stdio build, red where a listener is expected."""
    return (NO_LISTENER, "no listener", "red") if settings.app.expect_listener else (NO_LISTENER, NO_ENDPOINT, "blue")


def listener_note(settings: Settings) -> str:
    """A panel description's sentence on what "nothing listens" means with these settings."""
    if settings.app.expect_listener:
        return "A listener is expected (app.expect_listener), so none is a failure."
    return (f"No listener shows as \"{NO_ENDPOINT}\": the public build serves no HTTP (app.expect_listener "
            "is false).")


def _no_listener() -> str:
    return f"{NO_LISTENER} * {series(catalog.PROBE_STATE, NO_LISTENER_STATE)}"


def probe_outcome() -> str:
    """1 when the endpoint answered as expected, NO_LISTENER when nothing listens, 0 for any other failure."""
    return f"{series(catalog.PROBE_SUCCESS)} + on ({PROBE}) {_no_listener()}"


def probe_status() -> str:
    """The HTTP status of the last probe; NO_LISTENER when nothing listens, 0 for no answer otherwise."""
    return f"{series(catalog.PROBE_HTTP_STATUS)} + on ({PROBE}) {_no_listener()}"


def probe_failures() -> str:
    """Each failing state as 1 while it holds, and no_listener as NO_LISTENER; 0 while a state does not hold."""
    return f"{series(catalog.PROBE_STATE, FAILING_STATES)} or {_no_listener()}"


def port_outcome() -> str:
    """1 while something listens on the server's port, else NO_LISTENER."""
    listening = series(catalog.PROCESS_PORT_LISTENING)
    return f"{listening} + {NO_LISTENER} * ({listening} == bool 0)"


# --- a readable database without events ------------------------------------------------------------
NONE = "(none)"


def zero_while_readable(expr: str, *, by: tuple[str, ...] = ("instance",), label: str | None = None) -> str:
    """`expr`, or 0 while the database is readable and `expr` has nothing (no event was ever stored): per
    `by`, with `label` set to "(none)" for a legend that names it."""
    grouping = f"by ({', '.join(by)}) " if by else ""
    zero = f"sum {grouping}({series(catalog.DB_UP)} == 1) * 0"
    if label:
        zero = f'label_replace({zero}, "{label}", "{NONE}", "", "")'
    return f"{expr} or on ({', '.join(by)}) {zero}"


# --- no answer, no latency ------------------------------------------------------------------------------
def answered_probes(expr: str) -> str:
    """A probe latency only for endpoints that gave an HTTP answer: a refused connection takes
    milliseconds too, and it is not a response time."""
    return f"{expr} and on (instance, endpoint) ({series(catalog.PROBE_HTTP_STATUS)} > 0)"


def answered_requests(expr: str) -> str:
    """An access-log latency only while requests were logged: with none, there is no response time."""
    return f"{expr} and on (instance) (sum by (instance) ({rate(catalog.HTTP_DURATION.count)}) > 0)"

