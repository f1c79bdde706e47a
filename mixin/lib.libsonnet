// What the generated mixin files call: Jsonnet that prints values the way alerting/rules.py does.
{
  // Seconds in a Prometheus duration such as '1h30m' (core/settings.py `seconds`).
  seconds(duration)::
    local units = { w: 604800, d: 86400, h: 3600, m: 60, s: 1 };
    local bad = 'devflow mixin: %s is not a duration like 30s, 5m, 1h or 2d' % std.toString(duration);
    local step(acc, char) =
      if std.member('0123456789', char) then acc { digits: acc.digits + char }
      else if std.objectHas(units, char) && acc.digits != '' then
        { total: acc.total + std.parseInt(acc.digits) * units[char], digits: '' }
      else error bad;
    local result = std.foldl(step, std.stringChars(duration), { total: 0, digits: '' });
    assert std.isString(duration) && duration != '' && result.digits == '' : bad;
    result.total,

  // A threshold as PromQL reads it (alerting/rules.py `number`): whole numbers without a decimal point.
  number(value):: if value == std.floor(value) then std.toString(value) else std.format('%.15g', value),

  // The alert groups without the alerts `_config` disables, and without groups left empty.
  enabledAlerts(config, groups)::
    std.filter(function(group) std.length(group.rules) > 0, [
      group { rules: std.filter(function(rule) config.alerts[rule.alert].enabled, group.rules) }
      for group in groups
    ]),

  // Dotted paths of `value` that `known` does not have: an override's typos.
  unknownKeys(value, known, prefix='')::
    std.flattenArrays([
      if !std.objectHas(known, key) then [prefix + key]
      else if std.isObject(value[key]) && std.isObject(known[key]) then
        self.unknownKeys(value[key], known[key], prefix + key + '.')
      else []
      for key in std.objectFields(value)
    ]),
}
