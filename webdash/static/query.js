// Turning a panel's targets into Prometheus requests the way Grafana does, and answers into frames.
// A frame is {refId, name, labels, points: [[seconds, value|null], ...]}.

// Grafana's rangeutil.roundInterval steps, in seconds: $__interval is the range over the points a
// panel can show, rounded to one of these, and never below the scrape interval.
const NICE_INTERVALS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200,
  1800, 3600, 7200, 10800, 21600, 43200, 86400];

export function interval(rangeSeconds, points, scrapeSeconds) {
  const raw = rangeSeconds / Math.max(points, 1);
  const nice = NICE_INTERVALS.find((step) => step >= raw) || NICE_INTERVALS[NICE_INTERVALS.length - 1];
  return Math.max(nice, scrapeSeconds);
}

// Grafana: $__rate_interval = max($__interval + scrape interval, 4 * scrape interval).
export function rateInterval(intervalSeconds, scrapeSeconds) {
  return Math.max(intervalSeconds + scrapeSeconds, 4 * scrapeSeconds);
}

export function promDuration(seconds) {
  return Number.isInteger(seconds) ? `${seconds}s` : `${Math.round(seconds * 1000)}ms`;
}

// Prometheus' regex escape for a multi-value or "All" variable (Grafana's prometheusSpecialRegexEscape):
// backslashes doubled because the value lands inside a PromQL string.
function regexEscape(value) {
  return value.replace(/\\/g, "\\\\\\\\").replace(/[$^*{}[\]'+?.()|]/g, "\\\\$&");
}

// The text a variable puts in the query: "All" becomes its allValue, several values a group.
export function variableText(variable, selected) {
  if (!selected.length || selected.includes("$__all")) return variable.allValue || ".*";
  if (!variable.multi && !variable.includeAll) return selected[0];
  const escaped = selected.map(regexEscape);
  return escaped.length === 1 ? escaped[0] : `(${escaped.join("|")})`;
}

export function interpolate(expr, values) {
  return expr.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, braced, bare) => {
    const name = braced || bare;
    return Object.prototype.hasOwnProperty.call(values, name) ? values[name] : whole;
  });
}

export class QueryError extends Error {
  constructor(message, kind) {
    super(message);
    this.kind = kind; // "unavailable" when Prometheus did not answer, else Prometheus' errorType
  }
}

export async function getJSON(url) {
  let response;
  try {
    response = await fetch(url, { cache: "no-store" });
  } catch (error) {
    throw new QueryError(`the dashboard server is unreachable (${error.message})`, "unavailable");
  }
  let body;
  try {
    body = await response.json();
  } catch (error) {
    throw new QueryError(`HTTP ${response.status} without JSON`, "bad_response");
  }
  if (!response.ok || body.status === "error") {
    throw new QueryError(body.error || `HTTP ${response.status}`, body.errorType || "error");
  }
  return body;
}

function value(text) {
  const number = parseFloat(text);
  return Number.isNaN(number) ? null : number;
}

export function legend(format, labels) {
  if (!format) {
    const { __name__: name = "", ...rest } = labels;
    const inner = Object.entries(rest).map(([k, v]) => `${k}="${v}"`).join(", ");
    return `${name}{${inner}}`;
  }
  return format.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, label) => labels[label] ?? "");
}

// Grafana's "heatmap" format: buckets sorted by `le`, each made non-cumulative.
function decumulate(frames) {
  const le = (f) => (f.labels.le === "+Inf" ? Infinity : parseFloat(f.labels.le));
  const sorted = [...frames].sort((a, b) => le(a) - le(b));
  return sorted.map((frame, i) => ({
    ...frame,
    points: frame.points.map(([t, v], j) => {
      const below = i > 0 ? sorted[i - 1].points[j] : null;
      return [t, v === null || !below || below[1] === null ? v : v - below[1]];
    }),
  }));
}

// Runs one target; `time` = {start, end, step} in seconds. Returns frames.
export async function runTarget(target, expr, time) {
  const instant = target.instant && !target.range;
  const params = new URLSearchParams({ query: expr });
  if (instant) {
    params.set("time", String(time.end));
  } else {
    params.set("start", String(time.start));
    params.set("end", String(time.end));
    params.set("step", String(time.step));
  }
  const path = instant ? "/api/v1/query" : "/api/v1/query_range";
  const body = await getJSON(`${path}?${params}`);
  const result = body.data.result;
  let frames = result.map((series) => ({
    refId: target.refId,
    name: legend(target.legendFormat, series.metric),
    labels: series.metric,
    points: series.values ? series.values.map(([t, v]) => [t, value(v)])
      : series.value ? [[series.value[0], value(series.value[1])]] : [],
  }));
  if (target.format === "heatmap") frames = decumulate(frames);
  return frames;
}
