"""The machine DevFlow runs on, so rules can say "above 50% of the machine" as the guide does.

Sample output:

    devflow_host_memory_total_bytes 2.5e+10
    devflow_host_memory_available_bytes 2.3e+10
    devflow_host_cpus 2.0
"""

from __future__ import annotations

import psutil

from devflow_monitor.core import catalog
from devflow_monitor.core.config import Config
from devflow_monitor.exporter.collectors.base import Collector


class HostCollector(Collector):
    name = "host"

    def __init__(self, config: Config):
        super().__init__()
        self.cpus = psutil.cpu_count() or 1

    def collect(self):
        memory = psutil.virtual_memory()
        for metric, value in ((catalog.HOST_MEMORY_TOTAL, memory.total),
                              (catalog.HOST_MEMORY_AVAILABLE, memory.available),
                              (catalog.HOST_CPUS, self.cpus)):
            family = metric.family()
            family.add_metric([], value)
            yield family
