// Units, colours, thresholds, value mappings and field overrides as Grafana shows them (dark theme).
// The keys of UNITS, MAPPINGS, MATCHERS and COLORS are listed in webdash/drawable.py; a test keeps them equal.

export const COLORS = {
  green: "#73BF69",
  orange: "#FF9830",
  red: "#F2495C",
  blue: "#5794F2",
  yellow: "#FADE2A",
  purple: "#B877D9",
  "dark-red": "#C4162A",
  gray: "#808080", // not one of Grafana's named colours: Grafana draws it as the CSS colour
  transparent: "transparent",
};

// Grafana's "palette-classic": series colours in order.
export const PALETTE = ["#7EB26D", "#EAB839", "#6ED0E0", "#EF843C", "#E24D42", "#1F78C1", "#BA43A9",
  "#705DA0", "#508642", "#CCA300", "#447EBC", "#C15C17", "#890F02", "#0A437C", "#6D1F62", "#584477"];

export function color(name) {
  return COLORS[name] || name || COLORS.blue;
}

// Enough decimals to tell values apart, no trailing noise (Grafana's "auto" decimals, roughly).
export function decimals(value) {
  if (!Number.isFinite(value)) return String(value);
  const size = Math.abs(value);
  if (Number.isInteger(value)) return String(value);
  const digits = size >= 100 ? 0 : size >= 10 ? 1 : size >= 1 ? 2 : 3;
  return String(Number(value.toFixed(digits)));
}

function scaled(value, step, suffixes) {
  let index = 0;
  let size = value;
  while (Math.abs(size) >= step && index < suffixes.length - 1) {
    size /= step;
    index += 1;
  }
  return decimals(size) + suffixes[index];
}

const SI = ["", " K", " Mil", " Bil", " Tri"];
const TIME_STEPS = [["year", 31536000], ["week", 604800], ["day", 86400], ["hour", 3600], ["minute", 60],
  ["second", 1]];

function seconds(value) {
  const size = Math.abs(value);
  if (size === 0) return "0 s";
  if (size < 1e-3) return decimals(value * 1e6) + " µs";
  if (size < 1) return decimals(value * 1e3) + " ms";
  if (size < 60) return decimals(value) + " s";
  if (size < 3600) return decimals(value / 60) + " min";
  if (size < 86400) return decimals(value / 3600) + " hour";
  return decimals(value / 86400) + " day";
}

// "2 hours, 5 minutes": the two largest whole units, as Grafana's dtdurations.
function duration(value) {
  if (Math.abs(value) < 1) return seconds(value);
  let rest = Math.round(Math.abs(value));
  const parts = [];
  for (const [name, size] of TIME_STEPS) {
    const count = Math.floor(rest / size);
    if (count > 0 && parts.length < 2) {
      parts.push(`${count} ${name}${count === 1 ? "" : "s"}`);
      rest -= count * size;
    } else if (parts.length) {
      break;
    }
  }
  return (value < 0 ? "-" : "") + parts.join(", ");
}

function fromNow(millis) {
  const ago = (Date.now() - millis) / 1000;
  if (Math.abs(ago) < 45) return "a few seconds ago";
  const [name, size] = TIME_STEPS.find(([, s]) => Math.abs(ago) >= s * 0.75) || TIME_STEPS[5];
  const count = Math.max(1, Math.round(Math.abs(ago) / size));
  const text = `${count} ${name}${count === 1 ? "" : "s"}`;
  return ago >= 0 ? `${text} ago` : `in ${text}`;
}

export const UNITS = {
  none: decimals,
  short: (v) => scaled(v, 1000, SI),
  percentunit: (v) => decimals(v * 100) + "%",
  s: seconds,
  dtdurations: duration,
  dateTimeFromNow: fromNow,
  bytes: (v) => scaled(v, 1024, [" B", " KiB", " MiB", " GiB", " TiB", " PiB"]),
  Bps: (v) => scaled(v, 1000, [" B/s", " kB/s", " MB/s", " GB/s", " TB/s"]),
  ops: (v) => scaled(v, 1000, SI) + " ops/s",
  cps: (v) => scaled(v, 1000, SI) + " c/s",
  cpm: (v) => scaled(v, 1000, SI) + " cpm",
  reqps: (v) => scaled(v, 1000, SI) + " req/s",
};

export function formatValue(value, unit) {
  if (value === null || value === undefined || Number.isNaN(value)) return "No data";
  if (!Number.isFinite(value)) return value > 0 ? "+Inf" : "-Inf";
  return (UNITS[unit] || UNITS.none)(value);
}

// Value mapping kinds: each returns {text, color} for a value it maps, else null.
export const MAPPINGS = {
  value: (options, value) => options[String(value)] || null,
};

export function mapValue(mappings, value) {
  for (const mapping of mappings || []) {
    const result = MAPPINGS[mapping.type](mapping.options || {}, value);
    if (result) return result;
  }
  return null;
}

// Absolute thresholds: the colour of the last step at or below the value (the first step is -Infinity).
export function thresholdColor(thresholds, value) {
  const steps = (thresholds && thresholds.steps) || [{ color: "green", value: null }];
  let chosen = steps[0].color;
  for (const step of steps) {
    if (step.value === null || value >= step.value) chosen = step.color;
  }
  return color(chosen);
}

// Grafana's stringToJsRegex: "/pattern/flags" as written, any other pattern must match the whole name.
function namePattern(pattern) {
  const literal = /^\/(.*)\/([gimsuy]*)$/.exec(pattern);
  return literal ? new RegExp(literal[1], literal[2]) : new RegExp(`^${pattern}$`);
}

// Override matchers: whether an override applies to a frame ({name, refId}).
export const MATCHERS = {
  byName: (options, frame) => frame.name === options,
  byRegexp: (options, frame) => namePattern(options).test(frame.name),
  byFrameRefID: (options, frame) => frame.refId === options,
};

// The field config one frame is drawn with: the panel's defaults, then the properties of every override
// that matches the frame, in order, so a later override wins (as in Grafana).
export function fieldFor(fieldConfig, frame) {
  const field = { ...(fieldConfig.defaults || {}) };
  for (const override of fieldConfig.overrides || []) {
    const { id, options } = override.matcher;
    if (!MATCHERS[id](options, frame)) continue;
    for (const prop of override.properties || []) field[prop.id] = prop.value;
  }
  return field;
}

// The series' own colour when its colour mode is "fixed", else null.
export function fixedColor(field) {
  return field.color && field.color.mode === "fixed" ? color(field.color.fixedColor) : null;
}

// What a single value of a field shows as, in Grafana's order: a mapping's text and colour, else the
// formatted value; the colour of a fixed colour mode, else the threshold colour of the value.
export function display(field, value) {
  const mapped = value === null ? null : mapValue(field.mappings, value);
  return {
    text: mapped && mapped.text !== undefined ? mapped.text : formatValue(value, field.unit),
    color: (mapped && mapped.color ? color(mapped.color) : null) || fixedColor(field)
      || thresholdColor(field.thresholds, value),
  };
}
