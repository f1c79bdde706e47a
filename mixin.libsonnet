// devflow-monitor as a monitoring mixin: the same alerts, recording rules and dashboards that
// `make rules` and `make dashboards` generate, for kube-prometheus and other Jsonnet users.
//
//   local devflow = (import 'mixin.libsonnet') + {
//     _config+:: {
//       selector: 'job="devflow-monitor", namespace="dev"',
//       alerts+: { DevFlowHighCpuUsage+: { 'for': '10m', severity: 'critical' } },
//     },
//   };
//   { alerts: devflow.prometheusAlerts, rules: devflow.prometheusRules, dashboards: devflow.grafanaDashboards }
//
// `_config` has the shape of alerting/settings.py's settings, so one override file serves both this mixin
// and `python -m devflow_monitor.alerting.build --settings FILE`. Here it may change `selector`, `runbook_url` (with an
// {anchor} placeholder) and each alert's `for`, `severity` and `enabled`, plus `dashboardTags` and
// `grafanaDashboardFolder`. Thresholds and windows are compiled into the expressions: change those with
// `python -m devflow_monitor.alerting.build --settings FILE`. The inputs in mixin/ come from `python -m mixin.build`.

local alerting = import 'mixin/alerting.json';
local dashboards = import 'mixin/dashboards.libsonnet';

local alertFields = std.objectFields(alerting.defaults.alerts[std.objectFields(alerting.defaults.alerts)[0]]);

// Every string of `value` formatted with `context` (`%(selector)s` and friends; `%%` is a literal %).
local fill(value, context) =
  if std.isString(value) then value % context
  else if std.isArray(value) then [fill(item, context) for item in value]
  else if std.isObject(value) then { [key]: fill(value[key], context) for key in std.objectFields(value) }
  else value;

{
  _config+:: alerting.defaults + dashboards.defaults,

  local config = self._config,

  local alertContext(name) = {
    selector: config.selector,
    'for': config.alerts[name]['for'],
    severity: config.alerts[name].severity,
    runbook_url: std.strReplace(config.runbook_url, '{anchor}', std.asciiLower(name)),
  },

  prometheusAlerts+:: {
    local known = std.set(std.objectFields(alerting.defaults.alerts)),
    local unknown = std.setDiff(std.set(std.objectFields(config.alerts)), known),
    assert std.length(unknown) == 0 : 'devflow mixin: _config.alerts has no alert named ' + std.join(', ', unknown),
    local extra = [
      name + '.' + field
      for name in std.objectFields(config.alerts)
      for field in std.objectFields(config.alerts[name])
      if !std.member(alertFields, field)
    ],
    assert std.length(extra) == 0 :
           'devflow mixin: ' + std.join(', ', extra) + ' is compiled into the rules; '
           + 'change it with `python -m devflow_monitor.alerting.build --settings FILE` instead',

    groups+: std.filter(function(group) std.length(group.rules) > 0, [
      group {
        rules: [
          fill(rule, alertContext(rule.alert))
          for rule in group.rules
          if config.alerts[rule.alert].enabled
        ],
      }
      for group in alerting.alerts.groups
    ]),
  },

  prometheusRules+:: {
    groups+: fill(alerting.rules.groups, { selector: config.selector }),
  },

  // Keyed by file name, as kube-prometheus writes them; tags and the tag-based links follow dashboardTags.
  grafanaDashboards+:: {
    [name]: dashboards.dashboards[name] {
      tags: config.dashboardTags,
      links: [
        link + (if link.type == 'dashboards' then { tags: config.dashboardTags } else {})
        for link in super.links
      ],
    }
    for name in std.objectFields(dashboards.dashboards)
  },

  grafanaDashboardFolder:: config.grafanaDashboardFolder,
}
