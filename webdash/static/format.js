// Units, colours, thresholds and value mappings as Grafana shows them (dark theme).
// The keys of UNITS, MAPPINGS and COLORS are listed in webdash/drawable.py; a test keeps them equal.

export const COLORS = {
  green: "#73BF69",
  orange: "#FF9830",
  red: "#F2495C",
  blue: "#5794F2",
  yellow: "#FADE2A",
  purple: "#B877D9",
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

// The colour an override gives the series called `name`, or null.
export function overrideColor(overrides, name) {
  for (const override of overrides || []) {
    const { id, options } = override.matcher;
    const matches = id === "byName" ? name === options : new RegExp(options).test(name);
    if (!matches) continue;
    const prop = override.properties.find((p) => p.id === "color");
    if (prop) return color(prop.value.fixedColor);
  }
  return null;
}

// What a single value shows as: mapped text and colour first, else the formatted value and its
// threshold colour, unless an override fixes the series' colour.
export function display(field, name, value) {
  const defaults = field.defaults || {};
  const mapped = value === null ? null : mapValue(defaults.mappings, value);
  const fixed = overrideColor(field.overrides, name);
  return {
    text: mapped && mapped.text !== undefined ? mapped.text : formatValue(value, defaults.unit),
    color: fixed || (mapped && mapped.color ? color(mapped.color) : thresholdColor(defaults.thresholds, value)),
  };
}
