"""PromQL that more than one dashboard shows, so the Overview and the detail views agree."""

from devflow_monitor.core import catalog
from devflow_monitor.core.settings import Settings
from devflow_monitor.dashboards.grafana import rate, series

# devflow_process_up, plus 2 for a server run on demand (devflow.mode): 0 down, 1 up, 2 not running
# (on demand: normal), 3 up. An exporter that exports no mode reads as a daemon.
ON_DEMAND = 'mode="on_demand"'
PROCESS_BY_MODE = (f"{series(catalog.PROCESS_UP)} + on (job, instance) group_left () "
                   f"(2 * {series(catalog.TARGET_MODE, ON_DEMAND)}) or {series(catalog.PROCESS_UP)}")
CPU = f"sum by (instance) ({rate(catalog.PROCESS_CPU)})"
RSS_OF_MACHINE = f"{series(catalog.PROCESS_RSS)} / on (job, instance) {series(catalog.HOST_MEMORY_TOTAL)}"


def log_error_ratio(settings: Settings) -> str:
    """Error records (the settings' app.error_levels) per record."""
    return (f"sum by (instance) ({rate(catalog.LOG_LINES, settings.app.error_selector)}) / "
            f"sum by (instance) ({rate(catalog.LOG_LINES)})")
EVENTS_PER_MINUTE = f"sum by (instance) ({rate(catalog.EVENTS_INGESTED)}) * 60"
