"""PromQL that more than one dashboard shows, so the Overview and the detail views agree."""

from devflow_monitor.core import catalog
from devflow_monitor.dashboards.grafana import rate, series

# Log levels are matched without regard to case: the formats write ERROR, error and Error.
ERROR_LEVELS = 'level=~"(?i)error|fatal"'

CPU = f"sum by (instance) ({rate(catalog.PROCESS_CPU)})"
RSS_OF_MACHINE = f"{series(catalog.PROCESS_RSS)} / on (job, instance) {series(catalog.HOST_MEMORY_TOTAL)}"
LOG_ERROR_RATIO = (f"sum by (instance) ({rate(catalog.LOG_LINES, ERROR_LEVELS)}) / "
                   f"sum by (instance) ({rate(catalog.LOG_LINES)})")
EVENTS_PER_MINUTE = f"sum by (instance) ({rate(catalog.EVENTS_INGESTED)}) * 60"
