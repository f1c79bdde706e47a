"""Rule tests of the DevFlow process alerts: up, its port, CPU and memory."""

from __future__ import annotations

import math

from devflow_monitor.alerting.unittests.cases import (FAULT_AT, MIB, Case, Context, constant, counter_from,
                                                      drops_to_zero, percent_above, rising, scenario, steps)
from devflow_monitor.core.settings import seconds
from devflow_monitor.core import catalog


drops_to_zero("DevFlowProcessDown", catalog.PROCESS_UP.name, "the process exits", "the process runs")


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
    busy = {user: counter_from(FAULT_AT, per_minute / 2, c.end), system: counter_from(FAULT_AT, per_minute / 2, c.end)}
    calm_cores = c.alert.threshold / 2
    calm = {user: rising(calm_cores * 60 / 2, c.end), system: rising(calm_cores * 60 / 2, c.end)}
    return [Case("an idle process starts using CPU above the threshold", busy, FAULT_AT, c.labels(),
                 f"{pct}%"),  # humanizePercentage
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
