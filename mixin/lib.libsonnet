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
  number(value):: if value == std.floor(value) then std.toString(value) else self.formatG(value, 15),

  // Python's format(value, '.<precision>g'), which std.format's %g is not: below 1 it keeps one
  // significant digit too few. The digits are std.toString's (17 significant, or the whole
  // integer) rounded half to even, which is Python's rounding of the exact binary value except
  // within 1e-17 of a decimal tie. `precision` is at most 15, so the digits kept fit a number.
  formatG(value, precision=6)::
    local p = std.max(precision, 1);
    local parts = std.split(std.toString(if value < 0 then -value else value), 'e');
    local point = std.split(parts[0], '.');
    local digits = point[0] + (if std.length(point) > 1 then point[1] else '');
    local lead = std.length(digits) - std.length(std.lstripChars(digits, '0'));
    local significant = std.lstripChars(digits, '0') + std.repeat('0', p + 1);
    local exponent = std.length(point[0]) - lead - 1
                     + (if std.length(parts) > 1 then std.parseInt(std.strReplace(parts[1], '+', '')) else 0);
    local kept = std.substr(significant, 0, p);
    local next = significant[p];
    local rest = std.rstripChars(std.substr(significant, p + 1, std.length(significant)), '0');
    local up = next > '5' || (next == '5' && (rest != '' || std.parseInt(kept[p - 1]) % 2 == 1));
    local rounded = if up then std.toString(std.parseInt(kept) + 1) else kept;
    local sig = std.substr(rounded, 0, p);
    local e = exponent + (if std.length(rounded) > p then 1 else 0);  // 9.99 rounded up to 10.0
    local trim(text) = if std.member(text, '.') then std.rstripChars(std.rstripChars(text, '0'), '.') else text;
    local sign = if value < 0 then '-' else '';
    if std.length(std.lstripChars(digits, '0')) == 0 then '0'
    else if e >= -4 && e < p then
      sign + trim(if e >= 0 then std.substr(sig, 0, e + 1) + '.' + std.substr(sig, e + 1, p)
                  else '0.' + std.repeat('0', -e - 1) + sig)
    else
      sign + trim(sig[0] + '.' + std.substr(sig, 1, p)) + 'e' + (if e < 0 then '-' else '+')
      + (if std.abs(e) < 10 then '0' else '') + std.toString(std.abs(e)),

  // An alert rule as alerting/rules.py writes it: `rule` holds expr, summary and description; the
  // `for`, the severity and the runbook link come from the alert's `_config`.
  alert(config, name, rule):: {
    alert: name,
    expr: rule.expr,
    'for': config.alerts[name]['for'],
    labels: { severity: config.alerts[name].severity },
    annotations: {
      summary: rule.summary,
      description: rule.description,
      runbook_url: std.strReplace(config.runbook_url, '{anchor}', std.asciiLower(name)),
    },
  },

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
