// socgw live view: server-sent events from /events; the SOC chart is plain SVG (no library to ship).
"use strict";

const HOUR_S = 3600;
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
  "#7f7f7f", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"];
const SVG = "http://www.w3.org/2000/svg";
const history = { times: [], soc: {} };  // soc: node id -> [pct or null], aligned with times

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== "") node.textContent = text;
  return node;
}

function svg(tag, attrs = {}, text = "") {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== "") node.textContent = text;
  return node;
}

function fmt(value, digits = 0) {
  return value === null || value === undefined ? "–" : value.toFixed(digits);
}

function colour(index) { return PALETTE[index % PALETTE.length]; }

function socColour(pct) { return pct >= 40 ? "#2e8540" : pct >= 15 ? "#c47f00" : "#c0392b"; }

function setText(id, text) { document.getElementById(id).textContent = text; }

function showFleet(state) {
  const body = document.querySelector("#fleet tbody");
  const rows = state.nodes.map((node) => {
    const row = el("tr", { "data-node": node.id });
    row.append(el("td", { class: "node" }, node.id), el("td", {}, node.profile));
    const bar = el("div", { class: "socbar", title: `${fmt(node.soc_pct, 1)} %` });
    if (node.soc_pct !== null) {
      bar.append(el("div", { style: `width:${Math.max(0, Math.min(100, node.soc_pct))}%;background:${socColour(node.soc_pct)}` }));
    }
    const cell = el("td"); cell.append(bar); row.append(cell);
    row.append(
      el("td", { class: "num soc" }, fmt(node.soc_pct, 1)),
      el("td", { class: "num power" }, fmt(node.power_w)),
      el("td", { class: "num setpoint" }, fmt(node.setpoint_w)),
      el("td", { class: "num temp" }, fmt(node.temp_c, 1)),
      el("td", { class: `mode-${node.mode}` }, node.mode || "–"),
      el("td", { class: `quality-${node.quality}` }, node.quality),
      el("td", { class: "alarms" }, node.alarms.join(", ")),
    );
    return row;
  });
  body.replaceChildren(...rows);
}

function showSite(state) {
  const fleet = state.fleet;
  setText("site", state.site);
  setText("request", `${fmt(fleet.request_w)} W`);
  setText("served", `${fmt(fleet.served_w)} W`);
  setText("unserved", `${fmt(fleet.unserved_w)} W`);
  setText("fleet-power", `${fmt(fleet.power_w)} W`);
  setText("fleet-soc", `${fmt(fleet.mean_soc_pct, 1)} %`);
  setText("spread", `${fmt(fleet.soc_spread_pct, 1)} %`);
  setText("online", `${fmt(fleet.nodes_online)} / ${fmt(fleet.nodes_total)}`);
  setText("cycle", `#${state.cycle}`);
  const timing = state.timing;
  const rows = [
    ["cycle", `${fmt(timing.cycle_ms)} ms`],
    ["interval p50", `${fmt(timing.interval_p50_ms, 1)} ms`],
    ["interval p99", `${fmt(timing.interval_p99_ms, 1)} ms`],
    ["late cycles", `${timing.late_cycles}`],
    ["site alarms", state.alarms.join(", ") || "none"],
  ];
  document.getElementById("timing").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  const events = state.events.map((event) => {
    const item = el("li", { class: event.kind });
    item.append(el("time", {}, new Date(event.time * 1000).toLocaleTimeString()));
    item.append(document.createTextNode(`${event.node ? event.node + ": " : ""}${event.text}`));
    return item;
  });
  document.getElementById("events").replaceChildren(...events);
}

function addSample(sample, nodeIds) {
  if (!sample || (history.times.length && sample.time <= history.times[history.times.length - 1])) return;
  history.times.push(sample.time);
  for (const id of nodeIds) {
    if (!history.soc[id]) history.soc[id] = new Array(history.times.length - 1).fill(null);
    history.soc[id].push(sample.soc_pct[id] ?? null);
  }
  while (history.times.length && sample.time - history.times[0] > HOUR_S) {
    history.times.shift();
    for (const id of Object.keys(history.soc)) history.soc[id].shift();
  }
}

function drawChart(nodeIds) {
  const chart = document.getElementById("chart");
  const [width, height, left, right, top, bottom] = [900, 260, 36, 14, 10, 22];
  const times = history.times;
  const end = times.length ? times[times.length - 1] : Date.now() / 1000;
  // The window grows with the history the gateway has, up to the hour.
  const span = Math.min(HOUR_S, Math.max(60, times.length ? end - times[0] : 0));
  const start = end - span;
  const x = (t) => left + ((t - start) / span) * (width - left - right);
  const y = (pct) => top + (1 - pct / 100) * (height - top - bottom);
  const parts = [];
  for (const pct of [0, 25, 50, 75, 100]) {
    parts.push(svg("line", { class: "grid", x1: left, x2: width - right, y1: y(pct), y2: y(pct) }));
    parts.push(svg("text", { class: "axis", x: 4, y: y(pct) + 4 }, `${pct}%`));
  }
  for (const fraction of [1, 0.75, 0.5, 0.25, 0]) {
    const ago = span * fraction;
    const label = fraction === 0 ? "now" : ago >= 120 ? `−${Math.round(ago / 60)} min` : `−${Math.round(ago)} s`;
    parts.push(svg("text", { class: "axis", x: Math.min(x(end - ago) - 12, width - 30), y: height - 6 }, label));
  }
  nodeIds.forEach((id, index) => {
    const values = history.soc[id] || [];
    let points = [];
    const flush = () => {
      if (points.length) parts.push(svg("polyline", { points: points.join(" "), stroke: colour(index), "data-node": id }));
      points = [];
    };
    values.forEach((pct, i) => {
      if (pct === null) { flush(); return; }  // a gap where the pack was offline
      points.push(`${x(history.times[i]).toFixed(1)},${y(pct).toFixed(1)}`);
    });
    flush();
  });
  chart.replaceChildren(...parts);
  const legend = nodeIds.map((id, index) => el("span", { style: `--c:${colour(index)}` }, id));
  document.getElementById("legend").replaceChildren(...legend);
}

function connect() {
  const status = document.getElementById("connection");
  const source = new EventSource("/events");
  source.addEventListener("history", (message) => {
    const data = JSON.parse(message.data);
    history.times = data.times;
    history.soc = data.soc_pct;
  });
  source.addEventListener("state", (message) => {
    const state = JSON.parse(message.data);
    const ids = state.nodes.map((node) => node.id);
    addSample(state.sample, ids);
    showSite(state);
    showFleet(state);
    drawChart(ids);
    status.textContent = `live · ${new Date(state.time * 1000).toLocaleTimeString()}`;
    status.className = "connection live";
  });
  source.onerror = () => { status.textContent = "reconnecting…"; status.className = "connection"; };
}

connect();
