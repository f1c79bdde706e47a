"""Rule tests of the DevFlow process alerts: down, crashed, its port, CPU and memory."""

from __future__ import annotations

import math

from devflow_monitor.alerting.unittests.cases import (FAULT_AT, MIB, Case, Context, appears, constant, counter_from,
                                                      percent_above, rising, scenario, steps, until)
from devflow_monitor.core.settings import seconds
from devflow_monitor.core import catalog


def _mode(c: Context, mode: str) -> dict[str, str]:
    """devflow_target_mode as the exporter exports it: 1 for its configured mode, 0 for the other."""
    return {c.series(catalog.TARGET_MODE.name, mode=name): constant(1 if name == mode else 0, c.end)
            for name in ("daemon", "on_demand")}


@scenario("DevFlowProcessDown")
def _process_down(c: Context) -> list[Case]:
    up = c.series(catalog.PROCESS_UP.name)
    exits = {up: steps(1, FAULT_AT, 0, c.end)}
    return [Case("a daemon's process exits", {**exits, **_mode(c, "daemon")}, FAULT_AT, c.labels()),
            Case("the process exits and the exporter does not say how it runs (an older exporter)", exits,
                 FAULT_AT, c.labels()),
            Case("an on-demand server's client closes it", {**exits, **_mode(c, "on_demand")}),
            Case("an on-demand server whose client has not started it yet",
                 {up: constant(0, c.end), **_mode(c, "on_demand")}),
            Case("a daemon's process runs", {up: constant(1, c.end), **_mode(c, "daemon")})]


@scenario("DevFlowServerCrashed")
def _server_crashed(c: Context) -> list[Case]:
    window = seconds(c.alert.window) // 60
    up = c.series(catalog.PROCESS_UP.name)
    crash = c.series(catalog.PROCESS_EXITS.name, reason="crash")
    clean = c.series(catalog.PROCESS_EXITS.name, reason="clean")
    on_demand = {up: steps(1, FAULT_AT, 0, c.end), **_mode(c, "on_demand")}
    # Both checked when the crash leaves the window: Prometheus 2 and 3 agree from that minute on.
    return [Case("an on-demand server crashes, then the crash ages out of the window",
                 {**on_demand, crash: steps(0, FAULT_AT, 1, c.end), clean: constant(0, c.end)}, FAULT_AT,
                 c.labels(reason="crash"), resolves_at=FAULT_AT + window),
            Case("a daemon crashes and is restarted at once",
                 {up: constant(1, c.end), **_mode(c, "daemon"), crash: steps(0, FAULT_AT, 1, c.end)}, FAULT_AT,
                 c.labels(reason="crash"), resolves_at=FAULT_AT + window),
            Case("the first crash the exporter sees creates its series",
                 {**on_demand, crash: appears(FAULT_AT, 1, c.end)}, FAULT_AT, c.labels(reason="crash"),
                 resolves_at=FAULT_AT + window),
            Case("an on-demand server's client closes it",
                 {**on_demand, crash: constant(0, c.end), clean: steps(0, FAULT_AT, 1, c.end)})]


@scenario("DevFlowPortNotListening")
def _port_not_listening(c: Context) -> list[Case]:
    up = c.series(catalog.PROCESS_UP.name)
    port = c.series(catalog.PROCESS_PORT_LISTENING.name, port="3000")
    return [Case("the port closes while the process runs", {up: constant(1, c.end), port: steps(1, FAULT_AT, 0, c.end)},
                 FAULT_AT, c.labels(port="3000")),
            Case("the port is listening", {up: constant(1, c.end), port: constant(1, c.end)}),
            Case("the process is down (DevFlowProcessDown says so)",
                 {up: constant(0, c.end), port: constant(0, c.end)})]


@scenario("DevFlowHighCpuUsage")
def _high_cpu(c: Context) -> list[Case]:
    # The rate ramps up over the window: `faulty` minutes of it are in the window when the alert fires.
    faulty = min(c.for_minutes + 1, c.window)
    pct = math.floor(c.alert.threshold * 100 * faulty) + 1  # so the first faulty minute alone crosses
    per_minute = pct / 100 * 60 * c.window / faulty  # CPU seconds a minute; the ratio reaches pct% at `for`
    user = c.series(catalog.PROCESS_CPU.name, mode="user")
    system = c.series(catalog.PROCESS_CPU.name, mode="system")
    up = c.series(catalog.PROCESS_UP.name)
    busy = {user: counter_from(FAULT_AT, per_minute / 2, c.end), system: counter_from(FAULT_AT, per_minute / 2, c.end),
            up: constant(1, c.end)}
    # The process exits two minutes after the alert fires: its CPU series stop, their last samples stay in the
    # rate window, and the alert resolves at the exit, not once they have left the window.
    exit_at = FAULT_AT + c.for_minutes + 2
    exits = {user: until(busy[user], exit_at, c.end), system: until(busy[system], exit_at, c.end),
             up: steps(1, exit_at, 0, c.end)}
    calm_cores = c.alert.threshold / 2
    calm = {user: rising(calm_cores * 60 / 2, c.end), system: rising(calm_cores * 60 / 2, c.end),
            up: constant(1, c.end)}
    return [Case("an idle process starts using CPU above the threshold", busy, FAULT_AT, c.labels(),
                 f"{pct}%"),  # humanizePercentage
            Case("a busy process exits", exits, FAULT_AT, c.labels(), f"{pct}%", resolves_at=exit_at),
            Case("CPU at half the threshold", calm)]


@scenario("DevFlowHighMemoryUsage")
def _high_memory(c: Context) -> list[Case]:
    total = 100 * 1024 ** 3
    pct = percent_above(c.alert.threshold)
    rss = c.series(catalog.PROCESS_RSS.name)
    machine = c.series(catalog.HOST_MEMORY_TOTAL.name)
    return [Case("RSS grows above the threshold",
                 {rss: steps(total * c.alert.threshold / 2, FAULT_AT, total * pct / 100, c.end),
                  machine: constant(total, c.end)},
                 FAULT_AT, c.labels(), f"{pct}%"),  # humanizePercentage
            Case("RSS at half the threshold",
                 {rss: constant(total * c.alert.threshold / 2, c.end), machine: constant(total, c.end)})]


@scenario("DevFlowMemoryLeak")
def _memory_leak(c: Context) -> list[Case]:
    mib_per_hour = math.floor(c.alert.growth_bytes_per_hour / MIB) + 1
    window = seconds(c.alert.window)
    rss = c.series(catalog.PROCESS_RSS.name)
    started = c.series(catalog.PROCESS_START_TIME.name)
    old_process = constant(-2 * window, c.end)
    young_process = constant(c.end * 60, c.end)  # started after the last sample: still warming up
    growing = rising(mib_per_hour * MIB / 60, c.end, start=100 * MIB)
    return [Case("RSS of a long-running process grows steadily", {rss: growing, started: old_process}, 1,
                 c.labels(), f"{mib_per_hour}Mi"),  # humanize1024
            Case("RSS is flat", {rss: constant(100 * MIB, c.end), started: old_process}),
            Case("a process still warming up grows", {rss: growing, started: young_process})]
