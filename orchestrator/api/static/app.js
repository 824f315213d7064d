// Strato dashboard: a small vanilla-JS page over the /v1 API (no build step, no outside resources).
"use strict";

const state = { token: sessionStorage.getItem("strato-token") || "", selected: null, events: [], stream: null,
                infra: null, opTimer: null, samples: null, optimizerNode: null, optimizerAt: 0 };
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#3b7dd8", "#d8833b", "#3bb273", "#b23b8f", "#7a5cd6", "#c9b23b", "#3bb2b2"];

function el(tag, attrs = {}, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + state.token }, options.headers || {});
  if (options.body && typeof options.body !== "string") {
    headers["Content-Type"] = "application/json";
    options = Object.assign({}, options, { body: JSON.stringify(options.body) });
  }
  const resp = await fetch(path, Object.assign({}, options, { headers }));
  if (resp.status === 401) { showLogin("The token was refused."); throw new Error("unauthorized"); }
  const body = resp.headers.get("content-type")?.includes("json") ? await resp.json() : await resp.text();
  if (!resp.ok) throw new Error(body?.error?.message || resp.statusText);
  return body;
}

function showLogin(message) {
  $("login").hidden = false; $("app").hidden = true; $("logout").hidden = true;
  $("login-error").textContent = message || "";
  stopStream();
}

async function login(token) {
  state.token = token.trim();
  try {
    await api("/v1/infrastructures");
  } catch (e) { return; }
  sessionStorage.setItem("strato-token", state.token);
  $("login").hidden = true; $("app").hidden = false; $("logout").hidden = false;
  refreshList();
}

async function refreshList() {
  let data;
  try { data = await api("/v1/infrastructures"); } catch (e) { return; }
  const list = $("infra-list");
  list.replaceChildren();
  for (const infra of data.infrastructures) {
    const item = el("li", { "data-name": infra.name });
    item.append(el("strong", {}, infra.name), " ", el("span", { class: "badge " + infra.status }, infra.status),
                el("div", { class: "count" }, `${infra.instances} instance(s)`));
    if (infra.name === state.selected) item.classList.add("selected");
    item.onclick = () => select(infra.name);
    list.append(item);
  }
}

function stopStream() {
  if (state.stream) state.stream.abort();
  state.stream = null;
}

function select(name) {
  state.selected = name; state.events = []; state.samples = null; state.optimizerNode = null; state.optimizerAt = 0;
  $("optimizer").hidden = true;
  $("events").replaceChildren();
  stopStream();
  $("empty").hidden = true; $("infra").hidden = false;
  refreshList(); refreshInfra(); loadSamples();
  state.stream = new AbortController();
  followEvents(name, state.stream.signal);
}

let refreshPending = null;
function refreshSoon() {
  if (!refreshPending) refreshPending = setTimeout(() => { refreshPending = null; refreshInfra(); refreshList(); }, 300);
}

async function refreshInfra() {
  const name = state.selected;
  if (!name) return;
  let infra, graph;
  try {
    [infra, graph] = await Promise.all([api(`/v1/infrastructures/${encodeURIComponent(name)}`),
                                        api(`/v1/infrastructures/${encodeURIComponent(name)}/graph`)]);
  } catch (e) {
    $("infra-status").textContent = "gone"; $("infra-status").className = "badge";
    return;
  }
  state.infra = infra;
  $("infra-name").textContent = infra.name;
  $("infra-status").textContent = infra.status; $("infra-status").className = "badge " + infra.status;
  drawInstances(infra.instances);
  drawGraph(graph);
  drawOutputs(infra.outputs);
  drawRollouts(infra.rollouts || []);
  fillScaleNodes(graph);
  drawTimeline();
  loadOptimizer(graph.nodes.map((n) => n.id));
  loadModels();
  if (infra.operation) watchOperation(infra.operation);
}

// Model servers that name a `model` (the infrastructure's `rollouts`): the pinned stable version and a rollout's
// progress: canary version, step, weight (a bar) and the last verdict with why.
function drawRollouts(rollouts) {
  $("rollouts").hidden = !rollouts.length;
  const rows = rollouts.map((r) => {
    const box = el("div", { class: "rollout", "data-node": r.node });
    if (r.phase === "idle") {
      const last = r.last_rollout && r.last_rollout.canary ? `; last rollout: ${r.last_rollout.canary} ${r.last_rollout.outcome}` : "";
      box.append(el("p", {}, `${r.node}: ${r.stable || "?"}${last}`));
      return box;
    }
    const step = r.step ? `step ${r.step}/${r.steps}, ` : "";
    const verdict = r.verdict ? `; last analysis: ${r.verdict}` : "";
    const why = r.why && r.why.length ? ` (${r.why.join("; ")})` : "";
    box.append(el("p", {}, `${r.node}: ${r.stable} -> ${r.canary} ${r.phase}, ${step}canary ${r.weight} %${verdict}${why}`));
    const bar = el("svg:svg", { width: 300, height: 12, viewBox: "0 0 300 12", class: "weight" });
    bar.append(el("svg:rect", { x: 0, y: 0, width: 300, height: 12, fill: "#ddd" }));
    bar.append(el("svg:rect", { x: 0, y: 0, width: 3 * Math.max(0, Math.min(100, r.weight)), height: 12,
                                fill: r.phase === "aborted" ? "#b00020" : "#2a7" }));
    box.append(bar);
    return box;
  });
  $("rollouts-list").replaceChildren(...rows);
}

// Model servers with `monitoring` (GET .../models, then .../nodes/{node}/monitoring): per feature, the drift
// statistic of each window (red dots: drifted), the accuracy of the labels fed back, and the alarms.
async function loadModels() {
  const name = state.selected;
  if (!name || Date.now() - (state.modelsAt || 0) < 5000) return;
  state.modelsAt = Date.now();
  let models;
  try { models = (await api(`/v1/infrastructures/${encodeURIComponent(name)}/models`)).models; } catch (e) { return; }
  const nodes = Object.keys(models).sort();
  $("models").hidden = !nodes.length;
  const charts = [];
  for (const node of nodes) {
    let m;
    try { m = await api(`/v1/infrastructures/${encodeURIComponent(name)}/nodes/${encodeURIComponent(node)}/monitoring?windows=200`); }
    catch (e) { continue; }
    charts.push(drawModel(node, m));
  }
  if (name === state.selected) $("models-charts").replaceChildren(...charts);
}

function drawModel(node, m) {
  const W = 760, H = 110, L = 50, R = 20, T = 8;
  const wins = m.history, features = [...new Set(wins.flatMap((w) => Object.keys(w.features || {})))].sort();
  const alarms = Object.entries(m.alarms).map(([k, a]) => `${k} ${a.firing ? "FIRING" : "ok"}`).join(", ");
  const box = el("div", { class: "model" });
  box.append(el("p", {}, `${node}: ${m.version || "?"}, ${m.windows} windows; alarms: ${alarms}`));
  if (!wins.length) { box.append(el("p", {}, "No window closed yet.")); return box; }
  // each feature's score: 1 at its threshold (the dashed line), above it drifted; shown up to 5
  const CAP = 5, n = wins.length;
  const x = (i) => L + (W - L - R) * (n > 1 ? i / (n - 1) : 0.5), y = (v) => T + H - H * Math.min(v, CAP) / CAP;
  const svg = el("svg:svg", { width: W, height: H + T + 16, viewBox: `0 0 ${W} ${H + T + 16}` });
  svg.append(el("svg:line", { x1: L, y1: T + H, x2: W - R, y2: T + H, stroke: "#999" }));
  svg.append(el("svg:line", { x1: L, y1: y(1), x2: W - R, y2: y(1), stroke: "#b00020", "stroke-dasharray": "2 3" }));
  svg.append(el("svg:text", { x: L - 4, y: T + 10, "text-anchor": "end" }, `≥${CAP}`));
  svg.append(el("svg:text", { x: L - 4, y: y(1) + 4, "text-anchor": "end" }, "1"));
  features.forEach((f, k) => {
    const points = wins.map((w, i) => [i, (w.features || {})[f]]).filter((p) => p[1] && p[1][2] !== null && p[1][2] !== undefined);
    const d = points.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1][2]).toFixed(1)}`).join(" ");
    if (d) svg.append(el("svg:path", { d, fill: "none", stroke: COLORS[k % COLORS.length], class: "feature" }));
    for (const [i, v] of points) {
      svg.append(el("svg:circle", { cx: x(i), cy: y(v[2]), r: 2.5, fill: v[1] ? "#b00020" : COLORS[k % COLORS.length] }));
    }
    svg.append(el("svg:text", { x: L + 4 + k * 110, y: T + H + 14, fill: COLORS[k % COLORS.length] }, f));
  });
  const acc = wins.map((w, i) => [i, w.accuracy]).filter((p) => p[1] !== null && p[1] !== undefined);
  if (acc.length) {
    const d = acc.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${(T + H - H * p[1]).toFixed(1)}`).join(" ");
    svg.append(el("svg:path", { d, fill: "none", stroke: "#222", "stroke-dasharray": "4 3" }));
  }
  box.append(svg);
  return box;
}

function drawInstances(instances) {
  const body = $("instances").querySelector("tbody");
  body.replaceChildren();
  for (const inst of instances) {
    const attrs = Object.entries(inst.attributes || {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join("  ");
    const row = el("tr", { class: "instance" });
    row.append(el("td", {}, inst.node), el("td", {}, String(inst.index)),
               el("td", { class: "st-" + inst.status }, inst.status), el("td", {}, inst.driver),
               el("td", {}, ""), el("td", { class: "error" }, inst.error || ""));
    row.children[4].append(el("code", {}, attrs));
    body.append(row);
  }
}

const SECRET_MASK = "***";

function drawOutputs(outputs) {
  const list = $("outputs");
  list.replaceChildren();
  for (const [k, v] of Object.entries(outputs || {})) {
    // the server masks an output derived from a secret input as "***": say so rather than print the mask
    const hint = `derived from a secret input; strato outputs NAME --get ${k} --show-secrets prints it`;
    const value = v === SECRET_MASK ? el("dd", { class: "secret", title: hint }, "secret (hidden)")
                                    : el("dd", {}, JSON.stringify(v));
    list.append(el("dt", {}, k), value);
  }
}

function fillScaleNodes(graph) {
  const select = $("scale-node");
  const current = select.value;
  select.replaceChildren(...graph.nodes.map((n) => el("option", { value: n.id }, n.id)));
  if (current) select.value = current;
}

// Layered drawing: a node sits one level above the deepest of its dependencies.
function drawGraph(graph) {
  const deps = {};
  graph.nodes.forEach((n) => (deps[n.id] = []));
  graph.edges.forEach((e) => deps[e.from] && deps[e.from].push(e.to));
  const level = {};
  const depth = (id, seen = new Set()) => {
    if (level[id] !== undefined) return level[id];
    if (seen.has(id)) return 0;
    seen.add(id);
    level[id] = 1 + Math.max(-1, ...(deps[id] || []).map((d) => depth(d, seen)));
    return level[id];
  };
  graph.nodes.forEach((n) => depth(n.id));
  const levels = Math.max(0, ...Object.values(level)) + 1;
  const rows = [...Array(levels)].map(() => []);
  graph.nodes.forEach((n) => rows[levels - 1 - level[n.id]].push(n));
  const W = 150, H = 54, GX = 30, GY = 40;
  const width = Math.max(300, Math.max(...rows.map((r) => r.length)) * (W + GX) + GX);
  const height = levels * (H + GY) + GY / 2;
  const svg = el("svg:svg", { width, height, viewBox: `0 0 ${width} ${height}`, id: "graph-svg" });
  const defs = el("svg:defs");
  const marker = el("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7,
                                    markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(el("svg:path", { d: "M0,0 L10,5 L0,10 z", fill: "#555" }));
  defs.append(marker); svg.append(defs);
  const pos = {};
  rows.forEach((row, r) => row.forEach((n, i) => {
    const offset = (width - row.length * (W + GX) + GX) / 2;
    pos[n.id] = { x: offset + i * (W + GX), y: GY / 2 + r * (H + GY) };
  }));
  for (const e of graph.edges) {
    const a = pos[e.from], b = pos[e.to];
    if (!a || !b) continue;
    svg.append(el("svg:line", { x1: a.x + W / 2, y1: a.y + H, x2: b.x + W / 2, y2: b.y, stroke: "#555",
                                "marker-end": "url(#arrow)", class: "edge" }));
  }
  for (const n of graph.nodes) {
    const p = pos[n.id];
    const ready = n.instances.ready || 0;
    const total = Object.values(n.instances).reduce((a, b) => a + b, 0);
    const want = n.desired ?? total;
    const broken = (n.instances.failed || 0) + (n.instances.missing || 0) + (n.instances.delete_failed || 0);
    const fill = broken ? "#f7c6c6" : ready === want && total === want ? "#c9efcf" : "#fde6a8";
    const g = el("svg:g", { class: "node", "data-node": n.id });
    g.append(el("svg:rect", { x: p.x, y: p.y, width: W, height: H, rx: 8, fill, stroke: "#3b6db3" }));
    g.append(el("svg:text", { x: p.x + W / 2, y: p.y + 21, "text-anchor": "middle", "font-weight": "bold" }, n.id));
    g.append(el("svg:text", { x: p.x + W / 2, y: p.y + 40, "text-anchor": "middle" },
                `${ready}/${want} ready${n.driver ? " · " + n.driver : ""}`));
    svg.append(g);
  }
  $("graph").replaceChildren(svg);
}

async function watchOperation(opId) {
  if (state.opTimer && state.opTimer.id === opId) return;
  if (state.opTimer) clearTimeout(state.opTimer.handle);
  state.opTimer = { id: opId };
  const tick = async () => {
    let op;
    try { op = await api(`/v1/operations/${encodeURIComponent(opId)}`); } catch (e) { return; }
    $("operation").hidden = false;
    $("op-kind").textContent = op.kind;
    $("op-state").textContent = op.state;
    $("op-state").className = "badge " + (op.state === "succeeded" ? "ready" : op.state === "running" ? "building" : "failed");
    const p = op.progress || {};
    const pct = p.total ? Math.min(100, Math.round(100 * p.done / p.total)) : op.state === "running" ? 5 : 100;
    $("op-bar").style.width = pct + "%";
    const nodes = Object.entries(p.nodes || {}).map(([n, s]) => `${n}: ${s.status}`).join(", ");
    $("op-summary").textContent = `${p.done || 0}/${p.total || 0} changes done. ${nodes}`;
    $("op-error").textContent = op.error || "";
    if (op.state === "running") state.opTimer.handle = setTimeout(tick, 400);
    else { state.opTimer = null; refreshSoon(); }
  };
  tick();
}

async function followEvents(name, signal) {
  let lastId = null;
  while (!signal.aborted) {
    try {
      const headers = { Authorization: "Bearer " + state.token };
      if (lastId) headers["Last-Event-ID"] = lastId;
      const resp = await fetch(`/v1/infrastructures/${encodeURIComponent(name)}/events?last=5000`, { headers, signal });
      if (resp.ok) {
        const reader = resp.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
            let data = null;
            for (const line of block.split("\n")) {
              if (line.startsWith("id: ")) lastId = line.slice(4);
              else if (line.startsWith("data: ")) data = line.slice(6);
            }
            if (data) onEvent(JSON.parse(data));
          }
        }
      }
    } catch (e) {
      if (signal.aborted) return;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function onEvent(ev) {
  state.events.push(ev);
  if (state.events.length > 5000) state.events.shift();
  const when = new Date(ev.ts * 1000).toLocaleTimeString();
  // a decision's explanation (its forecast and candidates) is drawn in the optimizer card, not listed here
  const what = ev.key ? ev.key.split("@")[0] : Object.entries(ev.detail || {}).filter(([k]) => k !== "detail")
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" ");
  const item = el("li", { class: "event ev-" + ev.kind }, `${when} ${ev.kind} ${what}`);
  $("events").prepend(item);
  refreshSoon();
}

async function loadSamples() {
  const name = state.selected;
  try {
    const series = (await api("/v1/optimizer/samples")).series.filter((s) => s.infrastructure === name);
    if (!series.length) return;
    const s = series[0];
    const data = await api(`/v1/optimizer/samples/${encodeURIComponent(name)}/${encodeURIComponent(s.node)}?limit=2000`);
    state.samples = Object.assign({ node: s.node }, data);
    drawTimeline();
  } catch (e) { /* the optimizer is optional */ }
}

// The timeline's data from the instance history in the journal: a node's count is the number of its live instance
// keys (live from `ready` until `deleted`), so a heal, which makes an existing key ready again, is a mark of its
// own and never one more instance; every scaling decision (a manual scale's `count` or a policy's `desired`).
function timelineModel(events) {
  const live = {}, series = {}, heals = [], decisions = [];
  for (const ev of events) {
    const node = ev.key ? ev.key.split("@")[0].split("/")[1] : ev.detail?.node;
    if (!node) continue;
    const keys = (live[node] = live[node] || new Set());
    const before = keys.size;
    if ((ev.kind === "create_started" || ev.kind === "replace_started") && keys.has(ev.key)) {
      heals.push({ ts: ev.ts, node, key: ev.key, kind: ev.kind === "create_started" ? "heal" : "replace",
                   reason: ev.detail?.reason || "" });
    } else if (ev.kind === "ready") {
      keys.add(ev.key);
    } else if (ev.kind === "deleted") {
      keys.delete(ev.key);
    } else if (ev.kind === "scaled") {
      const d = ev.detail || {};
      decisions.push({ ts: ev.ts, node, count: d.count ?? d.desired, from: d.from,
                       why: d.reason || (d.policy ? `policy ${d.policy}` : d.request ? "scale request" : "") });
    }
    if (keys.size !== before) (series[node] = series[node] || []).push([ev.ts, keys.size]);
  }
  return { series, heals, decisions };
}

// Instances per node over time, heals and scaling decisions as markers, and the optimizer's target metric where
// samples are stored.
function drawTimeline() {
  const { series, heals, decisions } = timelineModel(state.events);
  const samples = state.samples?.rows || [];
  const times = [...Object.values(series).flat().map((p) => p[0]), ...decisions.map((d) => d.ts),
                 ...heals.map((h) => h.ts), ...samples.map((r) => r.timestamp)];
  const holder = $("timeline");
  if (!times.length) { holder.replaceChildren(el("p", {}, "No scaling yet.")); return; }
  const W = 760, H = 220, L = 40, R = 50, T = 10, B = 30;
  let t0 = Math.min(...times), t1 = Math.max(...times, Date.now() / 1000);
  if (t1 - t0 < 10) t0 = t1 - 10;
  const maxCount = Math.max(1, ...Object.values(series).flat().map((p) => p[1]));
  const x = (t) => L + (W - L - R) * (t - t0) / (t1 - t0);
  const y = (c) => H - B - (H - B - T) * c / maxCount;
  const svg = el("svg:svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, id: "timeline-svg" });
  svg.append(el("svg:line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#999" }));
  svg.append(el("svg:line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#999" }));
  for (let c = 0; c <= maxCount; c += Math.max(1, Math.ceil(maxCount / 5))) {
    svg.append(el("svg:text", { x: L - 6, y: y(c) + 4, "text-anchor": "end" }, String(c)));
  }
  svg.append(el("svg:text", { x: L, y: H - 8 }, new Date(t0 * 1000).toLocaleTimeString()));
  svg.append(el("svg:text", { x: W - R, y: H - 8, "text-anchor": "end" }, new Date(t1 * 1000).toLocaleTimeString()));
  const legend = $("timeline-legend");
  legend.replaceChildren();
  Object.entries(series).forEach(([node, points], i) => {
    const color = COLORS[i % COLORS.length];
    let d = "";
    points.forEach(([t, c], j) => {
      d += j === 0 ? `M${x(t)},${y(0)} L${x(t)},${y(c)}` : ` L${x(t)},${y(points[j - 1][1])} L${x(t)},${y(c)}`;
    });
    d += ` L${x(t1)},${y(points[points.length - 1][1])}`;
    svg.append(el("svg:path", { d, fill: "none", stroke: color, "stroke-width": 2, class: "series", "data-node": node,
                                "data-counts": points.map((p) => p[1]).join(",") }));
    const key = el("span"); key.append(el("i", { style: `background:${color}` }), `${node} instances`);
    legend.append(key);
  });
  for (const dec of decisions) {
    const mark = el("svg:g", { class: "decision", "data-node": dec.node });
    mark.append(el("svg:line", { x1: x(dec.ts), y1: T, x2: x(dec.ts), y2: H - B, stroke: "#b00020",
                                 "stroke-dasharray": "4 3" }));
    const from = dec.from !== undefined ? ` from ${dec.from}` : "";
    mark.append(el("svg:title", {}, `scaled ${dec.node}${from} to ${dec.count}` + (dec.why ? `: ${dec.why}` : "")));
    mark.append(el("svg:text", { x: x(dec.ts) + 3, y: T + 12, fill: "#b00020" }, `${dec.node} →${dec.count}`));
    svg.append(mark);
  }
  for (const heal of heals) {
    const points = series[heal.node] || [];
    const at = points.filter((p) => p[0] <= heal.ts).pop();
    const mark = el("svg:g", { class: heal.kind, "data-node": heal.node });
    mark.append(el("svg:circle", { cx: x(heal.ts), cy: y(at ? at[1] : 0), r: 5, fill: "#fff", stroke: "#e07000",
                                   "stroke-width": 2 }));
    mark.append(el("svg:title", {}, `${heal.kind === "heal" ? "healed" : "replaced"} ${heal.key.split("@")[0]}` +
                                    (heal.reason ? `: ${heal.reason}` : "")));
    svg.append(mark);
  }
  if (samples.length) {
    const values = samples.map((r) => r.target).filter((v) => v !== null);
    const top = Math.max(...values, 1e-9);
    const ys = (v) => H - B - (H - B - T) * v / top;
    const d = samples.filter((r) => r.target !== null)
      .map((r, j) => `${j ? "L" : "M"}${x(r.timestamp)},${ys(r.target)}`).join(" ");
    svg.append(el("svg:path", { d, fill: "none", stroke: "#888", "stroke-width": 1.5, "stroke-dasharray": "2 2" }));
    svg.append(el("svg:text", { x: W - R + 4, y: T + 10 }, top.toPrecision(3)));
    const key = el("span"); key.append(el("i", { style: "background:#888" }),
                                       `${state.samples.target_name} (${state.samples.node}, right axis)`);
    legend.append(key);
  }
  if (decisions.length) {
    const key = el("span"); key.append(el("i", { style: "background:#b00020" }), "scaling decision");
    legend.append(key);
  }
  if (heals.length) {
    const key = el("span"); key.append(el("i", { style: "background:#e07000" }), "heal or replacement (same instance)");
    legend.append(key);
  }
  holder.replaceChildren(svg);
}

// The optimizer's decisions for one node (GET .../nodes/{node}/optimizer/timeline): the load observed with the
// forecast band one start-up delay ahead, the target predicted for the chosen count against the one observed, and
// the count. Shown for the first node that has such a timeline; the select switches node.
async function loadOptimizer(nodes) {
  const name = state.selected;
  if (!name || Date.now() - state.optimizerAt < 5000) return;
  state.optimizerAt = Date.now();
  const choice = $("optimizer-node");
  if ([...choice.options].map((o) => o.value).join("\n") !== nodes.join("\n")) {
    choice.replaceChildren(...nodes.map((n) => el("option", { value: n }, n)));
    choice.onchange = () => { state.optimizerNode = choice.value; state.optimizerAt = 0; loadOptimizer(nodes); };
  }
  for (const node of state.optimizerNode ? [state.optimizerNode] : nodes) {
    let timeline;
    try {
      timeline = await api(`/v1/infrastructures/${encodeURIComponent(name)}/nodes/${encodeURIComponent(node)}/optimizer/timeline`);
    } catch (e) { continue; }   // the optimizer is optional, and not every node has it
    if (name !== state.selected) return;
    if (!state.optimizerNode && !timeline.forecasts && !timeline.load.length) continue;
    state.optimizerNode = node; choice.value = node;
    $("optimizer").hidden = false;
    drawOptimizer(timeline);
    return;
  }
}

function drawOptimizer(tl) {
  const W = 760, PH = 120, GAP = 18, L = 50, R = 20, T = 8;
  const times = [...tl.observed.map((p) => p.t), ...tl.load.map((p) => p[0]),
                 ...tl.decisions.flatMap((d) => [d.t, d.at])];
  const holder = $("optimizer-chart");
  if (!times.length) { holder.replaceChildren(el("p", {}, "No optimizer decisions yet.")); return; }
  let t0 = Math.min(...times), t1 = Math.max(...times);
  if (t1 - t0 < 10) t0 = t1 - 10;
  const x = (t) => L + (W - L - R) * (t - t0) / (t1 - t0);
  const height = T + 3 * (PH + GAP) + 16;
  const svg = el("svg:svg", { width: W, height, viewBox: `0 0 ${W} ${height}`, id: "optimizer-svg" });
  const bands = tl.decisions.filter((d) => d.band).sort((a, b) => a.at - b.at);
  const panel = (i, label, values) => {
    const top = T + i * (PH + GAP), bottom = top + PH;
    const finite = values.filter((v) => v !== null && v !== undefined);
    const high = Math.max(1e-9, ...finite) * 1.05;
    svg.append(el("svg:line", { x1: L, y1: bottom, x2: W - R, y2: bottom, stroke: "#999" }));
    svg.append(el("svg:line", { x1: L, y1: top, x2: L, y2: bottom, stroke: "#999" }));
    svg.append(el("svg:text", { x: L - 4, y: top + 10, "text-anchor": "end" }, high.toPrecision(3)));
    svg.append(el("svg:text", { x: L + 4, y: top + 10, fill: "#555" }, label));
    return (v) => bottom - PH * v / high;
  };
  const line = (points, y, attrs) => {
    const kept = points.filter((p) => p[1] !== null && p[1] !== undefined);
    if (!kept.length) return;
    const d = kept.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    svg.append(el("svg:path", Object.assign({ d, fill: "none" }, attrs)));
  };
  const area = (lo, hi, y, attrs) => {
    const rows = bands.filter((b) => b.band[lo] !== null && b.band[hi] !== null);
    if (!rows.length) return;
    const upper = rows.map((b, j) => `${j ? "L" : "M"}${x(b.at).toFixed(1)},${y(b.band[hi]).toFixed(1)}`);
    const lower = rows.slice().reverse().map((b) => `L${x(b.at).toFixed(1)},${y(b.band[lo]).toFixed(1)}`);
    svg.append(el("svg:path", Object.assign({ d: upper.concat(lower).join(" ") + " Z", stroke: "none" }, attrs)));
  };
  const yl = panel(0, tl.metric || "load", [...tl.load.map((p) => p[1]), ...bands.map((b) => b.band.q95)]);
  area("q05", "q95", yl, { fill: "#3b7dd8", "fill-opacity": 0.18, class: "band-outer" });
  area("q25", "q75", yl, { fill: "#3b7dd8", "fill-opacity": 0.35, class: "band-inner" });
  line(bands.map((b) => [b.at, b.band.q50]), yl, { stroke: "#3b7dd8", "stroke-dasharray": "4 3", class: "median" });
  line(tl.load, yl, { stroke: "#222", "stroke-width": 1.5, class: "load" });
  const yt = panel(1, tl.target_metric || "target", [...tl.observed.map((p) => p.target),
                   ...tl.decisions.map((d) => d.predicted_target), tl.target_value]);
  if (tl.target_value) line([[t0, tl.target_value], [t1, tl.target_value]], yt, { stroke: "#b00020", "stroke-dasharray": "2 3" });
  line(tl.observed.map((p) => [p.t, p.target]), yt, { stroke: "#222", "stroke-width": 1.5, class: "observed" });
  line(tl.decisions.map((d) => [d.at, d.predicted_target]), yt, { stroke: "#d8833b", class: "predicted" });
  const yc = panel(2, "instances", [...tl.observed.map((p) => p.instances), ...tl.decisions.map((d) => d.chosen)]);
  const steps = (points) => points.flatMap((p, j) => (j ? [[p[0], points[j - 1][1]], p] : [p]));
  line(steps(tl.observed.map((p) => [p.t, p.instances])), yc, { stroke: "#222", "stroke-width": 1.5, class: "instances" });
  line(steps(tl.decisions.map((d) => [d.t, d.chosen])), yc, { stroke: "#3bb273", "stroke-dasharray": "4 3", class: "chosen" });
  svg.append(el("svg:text", { x: L, y: height - 2 }, new Date(t0 * 1000).toLocaleTimeString()));
  svg.append(el("svg:text", { x: W - R, y: height - 2, "text-anchor": "end" }, new Date(t1 * 1000).toLocaleTimeString()));
  const legend = $("optimizer-legend");
  legend.replaceChildren();
  for (const [color, text] of [["#222", "observed"], ["#3b7dd8", "forecast 5-95 % / 25-75 % / median, one start-up delay ahead"],
                               ["#d8833b", "target predicted for the chosen count"], ["#3bb273", "chosen count"],
                               ["#b00020", "target value"]]) {
    const key = el("span"); key.append(el("i", { style: `background:${color}` }), text);
    legend.append(key);
  }
  holder.replaceChildren(svg);
}

$("login-form").addEventListener("submit", (e) => { e.preventDefault(); login($("token").value); });
$("logout").onclick = () => { sessionStorage.removeItem("strato-token"); state.token = ""; showLogin(); };
$("scale-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const node = $("scale-node").value, to = parseInt($("scale-to").value, 10);
  try {
    const r = await api(`/v1/infrastructures/${encodeURIComponent(state.selected)}/nodes/${encodeURIComponent(node)}/scale`,
                        { method: "POST", body: { to } });
    $("scale-result").textContent = `scaling ${node} from ${r.previous} to ${r.desired}`;
    watchOperation(r.operation);
  } catch (err) { $("scale-result").textContent = err.message; }
});
setInterval(() => { if (!$("app").hidden) refreshList(); }, 3000);
if (state.token) login(state.token); else showLogin();
