// One renderer per Grafana panel type: render(body, panel, frames, view) fills the panel's body.
// `view` = {start, end} in seconds. The keys of RENDERERS are listed in webdash/drawable.py.

import { COLORS, PALETTE, color, display, fieldFor, fixedColor, formatValue, thresholdColor } from "./format.js";

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

export function lastNotNull(points) {
  for (let i = points.length - 1; i >= 0; i -= 1) {
    if (points[i][1] !== null) return points[i][1];
  }
  return null;
}

function alpha(hex, opacity) {
  if (!hex.startsWith("#")) return hex;
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${opacity})`;
}

function seriesColor(panel, frame, index) {
  const field = fieldFor(panel.fieldConfig, frame);
  const mode = (field.color || {}).mode;
  return fixedColor(field)
    || (mode === "palette-classic" ? PALETTE[index % PALETTE.length] : thresholdColor(field.thresholds, lastNotNull(frame.points)));
}

// --- stat ------------------------------------------------------------------------------------

function sparkline(points, stroke) {
  const known = points.filter(([, v]) => v !== null);
  const chart = svg("svg", { class: "spark", viewBox: "0 0 100 100", preserveAspectRatio: "none" });
  if (known.length < 2) return chart;
  const [t0, t1] = [known[0][0], known[known.length - 1][0]];
  const values = known.map(([, v]) => v);
  const [low, high] = [Math.min(...values), Math.max(...values)];
  const y = (v) => (high === low ? 50 : 100 - ((v - low) / (high - low)) * 90);
  const line = known.map(([t, v], i) => `${i ? "L" : "M"}${((t - t0) / (t1 - t0 || 1)) * 100},${y(v)}`).join(" ");
  chart.append(svg("path", { d: `${line} L100,100 L0,100 Z`, fill: alpha(stroke, 0.2), stroke: "none" }),
    svg("path", { d: line, fill: "none", stroke, "stroke-width": 1.5, "vector-effect": "non-scaling-stroke" }));
  return chart;
}

function drawStat(body, panel, frames) {
  const { textMode, colorMode, graphMode } = panel.options;
  body.classList.add("tiles");
  for (const frame of frames) {
    const shown = display(fieldFor(panel.fieldConfig, frame), lastNotNull(frame.points));
    const withName = textMode === "name" || textMode === "value_and_name" || (textMode === "auto" && frames.length > 1);
    const tile = el("div", { class: "tile stat" },
      graphMode === "area" ? sparkline(frame.points, colorMode === "background" ? "#ffffff" : shown.color) : null,
      withName ? el("div", { class: textMode === "name" ? "stat-value" : "stat-name" }, frame.name) : null,
      textMode === "name" ? null : el("div", { class: "stat-value" }, shown.text));
    if (colorMode === "background") {
      tile.style.background = shown.color;
      tile.classList.add("filled");
    } else if (colorMode === "value") {
      tile.style.color = shown.color;
    }
    body.append(tile);
  }
}

// --- gauge -----------------------------------------------------------------------------------

const SWEEP = 240; // degrees, from lower left clockwise to lower right

function arc(cx, cy, r, from, to) {
  const point = (t) => {
    const angle = ((210 - SWEEP * t) * Math.PI) / 180;
    return [cx + r * Math.cos(angle), cy - r * Math.sin(angle)];
  };
  const [x0, y0] = point(from);
  const [x1, y1] = point(to);
  return `M${x0},${y0} A${r},${r} 0 ${(to - from) * SWEEP > 180 ? 1 : 0} 1 ${x1},${y1}`;
}

function drawGauge(body, panel, frames) {
  const defaults = panel.fieldConfig.defaults;
  const min = defaults.min ?? 0;
  const max = defaults.max ?? 100;
  const share = (v) => Math.min(1, Math.max(0, (v - min) / (max - min || 1)));
  body.classList.add("tiles");
  for (const frame of frames) {
    const value = lastNotNull(frame.points);
    const shown = display(fieldFor(panel.fieldConfig, frame), value);
    const chart = svg("svg", { class: "gauge", viewBox: "0 0 200 150" });
    chart.append(svg("path", { d: arc(100, 100, 80, 0, 1), stroke: "#2c3235", "stroke-width": 18, fill: "none" }));
    if (panel.options.showThresholdMarkers) {
      const steps = defaults.thresholds.steps;
      steps.forEach((step, i) => {
        const from = step.value === null ? 0 : share(step.value);
        const to = i + 1 < steps.length ? share(steps[i + 1].value) : 1;
        if (to > from) {
          chart.append(svg("path", { d: arc(100, 100, 94, from, to), stroke: color(step.color), "stroke-width": 5, fill: "none" }));
        }
      });
    }
    if (value !== null && share(value) > 0) {
      chart.append(svg("path", { d: arc(100, 100, 80, 0, Math.max(share(value), 0.002)), stroke: shown.color, "stroke-width": 18, fill: "none" }));
    }
    const text = svg("text", { x: 100, y: 112, "text-anchor": "middle", class: "gauge-value", fill: shown.color });
    text.textContent = shown.text;
    chart.append(text);
    body.append(el("div", { class: "tile" }, chart, frames.length > 1 ? el("div", { class: "stat-name" }, frame.name) : null));
  }
}

// --- bar gauge -------------------------------------------------------------------------------

function drawBargauge(body, panel, frames) {
  const defaults = panel.fieldConfig.defaults;
  const values = frames.map((f) => lastNotNull(f.points));
  const min = defaults.min ?? 0;
  const max = defaults.max ?? Math.max(...values.filter((v) => v !== null), min + 1e-9);
  body.classList.add("bars");
  frames.forEach((frame, i) => {
    const shown = display(fieldFor(panel.fieldConfig, frame), values[i]);
    const share = values[i] === null ? 0 : Math.min(1, Math.max(0, (values[i] - min) / (max - min || 1)));
    const fill = el("div", { class: "bar-fill" });
    fill.style.width = `${share * 100}%`;
    fill.style.background = panel.options.displayMode === "gradient"
      ? `linear-gradient(90deg, ${alpha(shown.color, 0.35)}, ${shown.color})` : shown.color;
    const value = el("div", { class: "bar-value" }, shown.text);
    value.style.color = shown.color;
    body.append(el("div", { class: "bar-name", title: frame.name }, frame.name),
      el("div", { class: "bar-track" }, fill), value);
  });
}

// --- state timeline --------------------------------------------------------------------------

function drawStateTimeline(body, panel, frames, view) {
  const span = view.end - view.start || 1;
  body.classList.add("timeline");
  const rows = el("div", { class: "timeline-rows" });
  for (const frame of frames) {
    const field = fieldFor(panel.fieldConfig, frame);
    const track = el("div", { class: "timeline-track" });
    const step = frame.points.length > 1 ? frame.points[1][0] - frame.points[0][0] : span;
    let i = 0;
    while (i < frame.points.length) {
      const [t, v] = frame.points[i];
      let j = i + 1;
      const merge = panel.options.mergeValues !== false;
      while (merge && j < frame.points.length && frame.points[j][1] === v && frame.points[j][0] - frame.points[j - 1][0] <= step * 1.5) j += 1;
      if (v !== null) {
        const end = j < frame.points.length ? frame.points[j][0] : Math.min(view.end, frame.points[j - 1][0] + step);
        const shown = display(field, v);
        const segment = el("div", { class: "segment", title: `${frame.name}: ${shown.text}` }, shown.text);
        segment.style.left = `${((t - view.start) / span) * 100}%`;
        segment.style.width = `${Math.max(((end - t) / span) * 100, 0.2)}%`;
        segment.style.background = shown.color === COLORS.transparent ? "transparent" : alpha(shown.color, (panel.fieldConfig.defaults.custom?.fillOpacity ?? 70) / 100);
        track.append(segment);
      }
      i = j;
    }
    rows.append(el("div", { class: "timeline-name", title: frame.name }, frame.name), track);
  }
  const legend = el("div", { class: "legend" });
  for (const mapping of panel.fieldConfig.defaults.mappings || []) {
    for (const result of Object.values(mapping.options || {})) {
      if (!result.text) continue;
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = color(result.color);
      legend.append(el("span", { class: "legend-item" }, swatch, result.text));
    }
  }
  body.append(rows, legend);
}

// --- table -----------------------------------------------------------------------------------

function organize(columns, options) {
  const excluded = options.excludeByName || {};
  const index = options.indexByName || {};
  const renamed = options.renameByName || {};
  const kept = columns.filter((c) => !excluded[c]);
  const position = (c) => (c in index ? index[c] : Object.keys(index).length + kept.indexOf(c));
  return kept.sort((a, b) => position(a) - position(b)).map((c) => [c, renamed[c] || c]);
}

const TRANSFORMATIONS = { organize };

function drawTable(body, panel, frames) {
  const rows = frames.map((f) => ({ Time: new Date(f.points[0][0] * 1000).toLocaleString(), ...f.labels, Value: f.points[0][1] }));
  let columns = ["Time", ...new Set(frames.flatMap((f) => Object.keys(f.labels))), "Value"].map((c) => [c, c]);
  for (const step of panel.transformations || []) {
    columns = TRANSFORMATIONS[step.id](columns.map(([c]) => c), step.options || {});
  }
  const unit = panel.fieldConfig.defaults.unit;
  const table = el("table", {},
    el("thead", {}, el("tr", {}, ...columns.map(([, label]) => el("th", {}, label)))),
    el("tbody", {}, ...rows.map((row) => el("tr", {}, ...columns.map(([c]) => el("td", {},
      c === "Value" ? formatValue(row[c], unit) : String(row[c] ?? "")))))));
  body.classList.add("scroll");
  body.append(table);
}

// --- time series -----------------------------------------------------------------------------

function yRange(defaults) {
  return (u, low, high) => {
    const [a, b] = uPlot.rangeNum(low ?? 0, high ?? 1, 0.1, true);
    const lo = defaults.min ?? a;
    const hi = defaults.max ?? (b > lo ? b : lo + 1);
    return [lo, hi];
  };
}

function thresholdLines(panel) {
  const mode = panel.fieldConfig.defaults.custom?.thresholdsStyle?.mode || "off";
  return (u) => {
    if (mode === "off") return;
    const { ctx, bbox } = u;
    ctx.save();
    ctx.lineWidth = 1;
    ctx.setLineDash(mode === "dashed" ? [10, 10] : []);
    for (const step of panel.fieldConfig.defaults.thresholds.steps.slice(1)) {
      const y = u.valToPos(step.value, "y", true);
      if (y < bbox.top || y > bbox.top + bbox.height) continue;
      ctx.strokeStyle = color(step.color);
      ctx.beginPath();
      ctx.moveTo(bbox.left, y);
      ctx.lineTo(bbox.left + bbox.width, y);
      ctx.stroke();
    }
    ctx.restore();
  };
}

function drawTimeseries(body, panel, frames, view) {
  const defaults = panel.fieldConfig.defaults;
  const custom = defaults.custom || {};
  const unit = defaults.unit;
  const times = [...new Set(frames.flatMap((f) => f.points.map(([t]) => t)))].sort((a, b) => a - b);
  const raw = frames.map((f) => {
    const byTime = new Map(f.points);
    return times.map((t) => (byTime.has(t) ? byTime.get(t) : null));
  });
  // Stacked series are drawn as running sums, tallest first, so each one's band shows above the one below.
  const stacked = custom.stacking?.mode === "normal";
  const drawn = stacked ? raw.map((_, i) => times.map((__, k) => {
    if (raw[i][k] === null) return null;
    return raw.slice(0, i + 1).reduce((sum, values) => sum + (values[k] ?? 0), 0);
  })) : raw;
  const order = stacked ? frames.map((_, i) => frames.length - 1 - i) : frames.map((_, i) => i);
  const bars = custom.drawStyle === "bars";
  const series = order.map((i) => {
    const stroke = seriesColor(panel, frames[i], i);
    return {
      label: frames[i].name,
      stroke,
      width: custom.lineWidth ?? 1,
      fill: custom.fillOpacity ? alpha(stroke, custom.fillOpacity / 100) : undefined,
      paths: bars ? uPlot.paths.bars({ size: [0.8, 64] }) : undefined,
      points: { show: false },
      spanGaps: custom.spanNulls === true,
      // The series' own value (not the stacked sum); the latest one while the cursor is off the chart.
      value: (u, v, s, idx) => formatValue(idx === null ? lastNotNull(frames[i].points) : raw[i][idx], unit),
    };
  });
  const axis = { stroke: "#9fa7b3", grid: { stroke: "#2a2d33", width: 1 }, ticks: { stroke: "#2a2d33", width: 1 }, font: "11px sans-serif" };
  const options = {
    width: Math.max(body.clientWidth, 100),
    height: Math.max(body.clientHeight - 24, 60),
    scales: { x: { time: true, range: [view.start, view.end] }, y: { range: yRange(defaults) } },
    axes: [axis, { ...axis, size: 72, values: (u, splits) => splits.map((v) => formatValue(v, unit)) }],
    series: [{}, ...series],
    legend: { show: body.clientHeight >= 140, live: true }, // a short panel keeps its height for the plot
    hooks: { draw: [thresholdLines(panel)] },
  };
  const chart = new uPlot(options, [times, ...order.map((i) => drawn[i])], body);
  const legendHeight = chart.root.querySelector(".u-legend")?.offsetHeight || 0;
  chart.setSize({ width: options.width, height: Math.max(body.clientHeight - legendHeight - 4, 60) });
}

export const RENDERERS = {
  row: null, // rows are headers, drawn by the page itself
  stat: drawStat,
  timeseries: drawTimeseries,
  gauge: drawGauge,
  bargauge: drawBargauge,
  "state-timeline": drawStateTimeline,
  table: drawTable,
};
