// The page: picks the dashboard from the path (/d/UID), lays its panels out on Grafana's grid, fills
// the variables, runs every panel's queries and redraws them on a timer. State lives in the URL, in
// Grafana's own parameters (from, refresh, var-job, var-instance), so a link shows the same view.

import { RENDERERS, el } from "./panels.js";
import { getJSON, interpolate, interval, promDuration, rateInterval, runTarget, variableText } from "./query.js";

const RANGES = { "15m": 900, "30m": 1800, "1h": 3600, "3h": 10800, "6h": 21600, "12h": 43200, "24h": 86400,
  "2d": 172800, "7d": 604800 };
const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
const ROW_HEIGHT = 30; // Grafana's grid cell height and gap, in pixels
const GAP = 8;
const RETRY_SECONDS = 5; // while Prometheus is down, try again this often whatever the refresh setting

const state = {
  board: null,
  boards: [],
  settings: { scrape_interval_seconds: 15 },
  params: new URLSearchParams(location.search),
  options: {}, // variable name -> values offered
  panels: [], // {panel, node, body}
  generation: 0,
  timer: null,
};

function seconds(text) {
  const match = /^(\d+)([smhdw])$/.exec(text || "");
  return match ? Number(match[1]) * UNIT_SECONDS[match[2]] : null;
}

function rangeName() {
  const from = (state.params.get("from") || state.board.time?.from || "now-1h").replace(/^now-/, "");
  return seconds(from) ? from : "1h";
}

function refreshName() {
  const value = state.params.has("refresh") ? state.params.get("refresh") : state.board.refresh;
  return seconds(value) ? value : "";
}

function selected(name) {
  const values = state.params.getAll(`var-${name}`);
  return values.length ? values : ["$__all"];
}

function setParams(changes) {
  for (const [key, value] of Object.entries(changes)) {
    state.params.delete(key);
    for (const v of [].concat(value)) if (v !== "" && v !== null) state.params.append(key, v);
  }
  history.replaceState(null, "", `${location.pathname}?${state.params}`);
}

function variables() {
  return (state.board.templating?.list || []).filter((v) => v.type === "query");
}

function templateValues(extra = {}) {
  const values = { datasource: "prometheus", ...extra };
  for (const variable of variables()) values[variable.name] = variableText(variable, selected(variable.name));
  return values;
}

// --- header: dashboards, variables, time range, refresh ---------------------------------------

function select(id, label, entries, current, onChange) {
  const node = el("select", { id, "aria-label": label });
  for (const [value, text] of entries) {
    const option = el("option", { value }, text);
    if (value === current) option.selected = true;
    node.append(option);
  }
  node.addEventListener("change", () => onChange(node.value));
  return el("label", { class: "control" }, el("span", {}, label), node);
}

function drawHeader() {
  const bar = document.getElementById("bar");
  const query = () => `?${state.params}`;
  const boards = state.boards.map((b) => [b.uid, b.title]);
  bar.replaceChildren(
    select("dashboard", "Dashboard", boards, state.board.uid, (uid) => { location.href = `/d/${uid}${query()}`; }),
    ...variables().map((v) => select(`var-${v.name}`, v.label || v.name,
      [["$__all", "All"], ...(state.options[v.name] || []).map((x) => [x, x])], selected(v.name)[0],
      (value) => { setParams({ [`var-${v.name}`]: value === "$__all" ? [] : value }); reload(); })),
    select("range", "Last", Object.keys(RANGES).map((r) => [r, r]), rangeName(),
      // As Grafana's variables with refresh 2: their values are asked again for the new range.
      (value) => { setParams({ from: `now-${value}`, to: "now" }); reload(); }),
    select("refresh", "Refresh", [["", "off"], ...(state.board.timepicker?.refresh_intervals || ["5s", "30s", "1m"])
      .map((r) => [r, r])], refreshName(), (value) => { setParams({ refresh: value || "off" }); schedule(); }),
    el("button", { id: "refresh-now", type: "button" }, "Refresh"));
  bar.querySelector("#refresh-now").addEventListener("click", () => refresh());
}

async function loadOptions() {
  const end = Math.floor(Date.now() / 1000);
  const start = end - RANGES[rangeName()];
  for (const variable of variables()) {
    const match = /^label_values\((.*),\s*(\w+)\)$/.exec(variable.query?.query || variable.query || "");
    if (!match) continue;
    const params = new URLSearchParams({ "match[]": interpolate(match[1], templateValues()), start, end });
    try {
      state.options[variable.name] = (await getJSON(`/api/v1/label/${match[2]}/values?${params}`)).data;
    } catch (error) {
      state.options[variable.name] = null; // offered again after the next refresh
    }
  }
}

// --- grid -------------------------------------------------------------------------------------

function place(node, grid) {
  node.style.gridColumn = `${grid.x + 1} / span ${grid.w}`;
  node.style.gridRow = `${grid.y + 1} / span ${grid.h}`;
}

function layout() {
  const main = document.getElementById("grid");
  main.style.gridAutoRows = `${ROW_HEIGHT}px`;
  main.style.gap = `${GAP}px`;
  main.replaceChildren();
  state.panels = [];
  let row = null;
  const flat = state.board.panels.flatMap((p) => [p, ...(p.panels || [])]);
  for (const panel of flat) {
    if (panel.type === "row") {
      row = el("div", { class: "row", "data-title": panel.title }, el("span", { class: "chevron" }, "▾"), panel.title);
      row.addEventListener("click", () => toggleRow(row));
      place(row, panel.gridPos);
      main.append(row);
      continue;
    }
    const body = el("div", { class: "panel-body" });
    const node = el("section", { class: "panel", "data-type": panel.type, "data-title": panel.title, "data-state": "loading" },
      el("header", { title: panel.description || "" }, el("h2", {}, panel.title)), body);
    place(node, panel.gridPos);
    node.row = row;
    main.append(node);
    state.panels.push({ panel, node, body });
  }
}

function toggleRow(row) {
  row.classList.toggle("collapsed");
  for (const { node } of state.panels) if (node.row === row) node.hidden = row.classList.contains("collapsed");
}

// --- queries ----------------------------------------------------------------------------------

function setState(entry, name, message) {
  entry.node.dataset.state = name;
  entry.body.className = "panel-body";
  if (message !== undefined) entry.body.replaceChildren(el("div", { class: `message ${name}` }, message));
}

async function refreshPanel(entry, view, generation) {
  const { panel, body, node } = entry;
  const range = view.end - view.start;
  // Grafana's maxDataPoints is the panel's width in pixels.
  const step = interval(range, Math.max(body.clientWidth, 100), state.settings.scrape_interval_seconds);
  const values = templateValues({
    __interval: promDuration(step),
    __rate_interval: promDuration(rateInterval(step, state.settings.scrape_interval_seconds)),
    __range: promDuration(range),
  });
  // Points counted back from now (Grafana aligns them to the step instead), so the newest one is always
  // drawn: on a 7-day view an aligned grid ends up to an hour ago, before a just-started exporter had data.
  const end = Math.floor(view.end);
  const time = { start: end - Math.ceil(range / step) * step, end, step };
  const queries = panel.targets.map((t) => ({ refId: t.refId, expr: interpolate(t.expr, values), instant: t.instant && !t.range,
    start: time.start, end: time.end, step }));
  node.dataset.queries = JSON.stringify(queries);
  let frames;
  try {
    frames = (await Promise.all(panel.targets.map((t, i) => runTarget(t, queries[i].expr, time)))).flat();
  } catch (error) {
    if (generation !== state.generation) return null;
    const down = error.kind === "unavailable";
    setState(entry, down ? "down" : "error", down ? `No data: ${error.message}. Retrying…` : `Query error: ${error.message}`);
    node.dataset.error = error.message;
    return down ? "down" : "error";
  }
  if (generation !== state.generation) return null;
  delete node.dataset.error;
  if (!frames.some((f) => f.points.some(([, v]) => v !== null))) {
    setState(entry, "nodata", panel.fieldConfig?.defaults?.noValue ?? "No data"); // Grafana shows noValue too
    return "nodata";
  }
  setState(entry, "data");
  body.replaceChildren();
  try {
    RENDERERS[panel.type](body, panel, frames, { start: time.start, end: view.end });
  } catch (error) {
    setState(entry, "error", `Cannot draw this panel: ${error.message}`);
    return "error";
  }
  return "data";
}

async function refreshAlerts() {
  const box = document.getElementById("alerts");
  try {
    const { alerts, source } = await getJSON("/api/alerts");
    box.dataset.state = alerts.length ? "firing" : "none";
    const items = alerts.map((a) => el("li", { class: `alert ${a.severity || ""}` },
      el("strong", {}, a.name), ` ${a.severity || ""} `, a.instance ? `on ${a.instance} ` : "",
      a.summary ? el("span", { class: "summary" }, `: ${a.summary}`) : null));
    box.replaceChildren(el("h2", {}, alerts.length ? `${alerts.length} firing (from ${source})` : `No alert firing (from ${source})`),
      el("ul", {}, ...items));
  } catch (error) {
    box.dataset.state = "down";
    box.replaceChildren(el("h2", {}, `Alerts unknown: ${error.message}`));
  }
}

async function refresh() {
  state.generation += 1;
  const generation = state.generation;
  clearTimeout(state.timer);
  const end = Date.now() / 1000;
  const view = { start: end - RANGES[rangeName()], end };
  const [results] = await Promise.all([
    Promise.all(state.panels.filter((p) => !p.node.hidden).map((p) => refreshPanel(p, view, generation))),
    refreshAlerts(),
  ]);
  if (generation !== state.generation) return;
  document.body.dataset.refreshed = String(generation);
  schedule(results.includes("down"));
}

function schedule(down = false) {
  clearTimeout(state.timer);
  const every = seconds(refreshName());
  const wait = down ? Math.min(every || RETRY_SECONDS, RETRY_SECONDS) : every;
  if (wait) state.timer = setTimeout(() => (down ? reload() : refresh()), wait * 1000);
}

// Variables first (their values may have changed or been unreachable), then the panels.
async function reload() {
  await loadOptions();
  drawHeader();
  await refresh();
}

async function main() {
  const [boards, settings] = await Promise.all([getJSON("/api/dashboards"), getJSON("/api/settings")]);
  state.boards = boards;
  state.settings = settings;
  const uid = (/^\/d\/([\w-]+)/.exec(location.pathname) || [])[1] || boards[0]?.uid;
  state.board = await getJSON(`/api/dashboards/${uid}`);
  document.title = state.board.title;
  layout();
  await reload();
  let resized = null;
  window.addEventListener("resize", () => { clearTimeout(resized); resized = setTimeout(refresh, 300); });
}

main().catch((error) => {
  document.getElementById("grid").replaceChildren(el("div", { class: "message error" }, `Cannot load the dashboards: ${error.message}`));
});
