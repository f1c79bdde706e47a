// devflow-monitor as a monitoring mixin: the same alerts, recording rules and dashboards that
// `make rules` and `make dashboards` generate, for kube-prometheus and other Jsonnet users.
//
//   local devflow = (import 'mixin.libsonnet') + {
//     _config+:: {
//       selector: 'job="devflow-monitor", namespace="dev"',
//       alerts+: { DevFlowHighCpuUsage+: { threshold: 0.9, 'for': '10m', severity: 'critical' } },
//     },
//   };
//   { alerts: devflow.prometheusAlerts, rules: devflow.prometheusRules, dashboards: devflow.grafanaDashboards }
//
// `_config` (mixin/config.libsonnet, the defaults of core/settings.py) holds the selector, the
// rate window of the recording rules, the error levels, and each alert's thresholds, windows, `for`,
// severity and `enabled`; the expressions read them when this file is evaluated. It has the shape of
// core/settings.py's settings, so one override file serves both this mixin and
// `python -m devflow_monitor.alerting.build --settings FILE`. mixin/*.libsonnet come from `python -m mixin.build`.

local lib = import 'mixin/lib.libsonnet';
local defaults = (import 'mixin/config.libsonnet')._config;
local dashboards = import 'mixin/dashboards.libsonnet';

(import 'mixin/config.libsonnet') +
(import 'mixin/alerts.libsonnet') +
(import 'mixin/rules.libsonnet') +
{
  local config = self._config,
  local unknown = lib.unknownKeys(config, defaults),
  local checked = std.length(unknown) == 0
                  || error 'devflow mixin: _config has no ' + std.join(', ', unknown) + ' (app.expect_listener, checklist, '
                           + 'scrape_interval and the Alertmanager settings are changed with '
                           + '`python -m devflow_monitor.alerting.build --settings FILE`)',

  prometheusAlerts+:: { assert checked },
  prometheusRules+:: { assert checked },

  // Keyed by file name, as kube-prometheus writes them; tags and the tag-based links follow dashboardTags.
  grafanaDashboards+:: {
    [name]: dashboards[name] {
      tags: config.dashboardTags,
      links: [
        link + (if link.type == 'dashboards' then { tags: config.dashboardTags } else {})
        for link in super.links
      ],
    }
    for name in std.objectFields(dashboards)
  },

  grafanaDashboardFolder:: config.grafanaDashboardFolder,
}
