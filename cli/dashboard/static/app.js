// The Sluice dashboard page: one EventSource on /api/stream, one card per canary.
// Plain DOM (textContent only, never innerHTML with data), no build step, no external fetches.
"use strict";

const MAX_EVENTS = 50;
const SPARK_WINDOW_MS = 10 * 60 * 1000; // the sparkline shows the last 10 minutes
const state = {
  config: { allow_actions: false, user: "" },
  canaries: new Map(), // "ns/name" -> CanaryView
  answers: new Map(), // "ns/name" -> {cls, text}
  status: { connected: false, problem: "connecting to NATS" },
  streaming: false,
};

const $ = (id) => document.getElementById(id);
const keyOf = (c) => `${c.namespace}/${c.name}`;

function field(card, name) {
  return card.querySelector(`[data-field="${name}"]`);
}

function fmt(value) {
  if (value === null || value === undefined) return "–";
  if (Number.isInteger(value)) return String(value);
  return String(Math.round(value * 100) / 100);
}

function threshold(m) {
  if (m.min !== null && m.min !== undefined && m.max !== null && m.max !== undefined) {
    return `${fmt(m.min)} – ${fmt(m.max)}`;
  }
  if (m.min !== null && m.min !== undefined) return `≥ ${fmt(m.min)}`;
  if (m.max !== null && m.max !== undefined) return `≤ ${fmt(m.max)}`;
  return "–";
}

function clock(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour12: false });
}

// ------------------------------------------------------------------ rendering

function renderHeader() {
  const status = $("status");
  const problem = $("problem");
  let cls = "live";
  let text = "live";
  if (!state.streaming) {
    cls = "down";
    text = "dashboard unreachable, retrying…";
  } else if (!state.status.connected) {
    cls = "down";
    text = "NATS unreachable";
  } else if (state.status.problem) {
    cls = "waiting";
    text = "waiting";
  }
  status.className = `status ${cls}`;
  status.textContent = text;
  problem.hidden = !state.status.problem;
  problem.textContent = state.status.problem || "";
  $("mode").textContent = state.config.allow_actions
    ? `actions allowed, as ${state.config.user}`
    : "read-only";
  $("empty").hidden = state.canaries.size > 0;
}

function sparkline(svg, c) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const ns = "http://www.w3.org/2000/svg";
  const W = 200;
  const H = 40;
  const y = (w) => (H - 2 - (Math.max(0, Math.min(100, w)) / 100) * (H - 4)).toFixed(1);
  if (c.max_weight) {
    const limit = document.createElementNS(ns, "line");
    limit.setAttribute("x1", "0");
    limit.setAttribute("x2", String(W));
    limit.setAttribute("y1", y(c.max_weight));
    limit.setAttribute("y2", y(c.max_weight));
    svg.appendChild(limit);
  }
  let points = (c.history || []).map(([t, w]) => [t, w]);
  const now = Math.max(Date.now(), points.length ? points[points.length - 1][0] : 0);
  if (!points.length) points.push([now, c.weight]);
  points.push([now, c.weight]); // the current weight, up to now
  // the last SPARK_WINDOW_MS at most; what came before starts the line at its weight
  const start = Math.max(points[0][0], now - SPARK_WINDOW_MS);
  const before = points.filter(([t]) => t <= start);
  points = [[start, before.length ? before[before.length - 1][1] : points[0][1]],
    ...points.filter(([t]) => t > start)];
  const t0 = start;
  const span = Math.max(1, now - t0);
  const coords = [];
  points.forEach(([t, w], i) => {
    const x = ((t - t0) / span) * W;
    if (i > 0) coords.push(`${x.toFixed(1)},${y(points[i - 1][1])}`); // steps, not slopes
    coords.push(`${x.toFixed(1)},${y(w)}`);
  });
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", coords.join(" "));
  svg.appendChild(line);
  svg.dataset.points = String(c.history ? c.history.length : 0);
}

function renderMetrics(table, c) {
  const body = table.querySelector("tbody");
  body.textContent = "";
  for (const m of c.metrics || []) {
    const row = document.createElement("tr");
    const verdict = m.passed === true ? "pass" : m.passed === false ? "fail" : "unknown";
    row.className = verdict;
    row.dataset.metric = m.name;
    const cells = [
      [m.name + (m.dry_run ? " (dry run)" : ""), "metric-name"],
      [fmt(m.value), "value"],
      [threshold(m), "threshold"],
      [verdict === "pass" ? "✓ pass" : verdict === "fail" ? "✗ fail" : "not measured", "verdict"],
    ];
    for (const [text, cls] of cells) {
      const cell = document.createElement("td");
      cell.className = cls;
      cell.textContent = text;
      row.appendChild(cell);
    }
    body.appendChild(row);
  }
  table.hidden = !(c.metrics || []).length;
}

function actionsFor(c) {
  if (!state.config.allow_actions || !c.valid) return [];
  const list = [];
  if (c.gate) list.push(["approve", ""], ["reject", "danger"]);
  list.push(["promote", ""], ["abort", "danger"]);
  list.push(c.paused ? ["resume", ""] : ["pause", ""]);
  if (c.phase === "Failed") list.push(["retry", ""]);
  return list;
}

function renderActions(box, c) {
  box.textContent = "";
  const list = actionsFor(c);
  box.hidden = !list.length;
  for (const [action, cls] of list) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = action;
    button.className = cls;
    button.dataset.action = action;
    button.addEventListener("click", () => act(c, action, button));
    box.appendChild(button);
  }
}

function renderEvents(list, c) {
  list.textContent = "";
  list.closest("details").hidden = !(c.events || []).length;
  for (const e of (c.events || []).slice(0, MAX_EVENTS)) {
    const item = document.createElement("li");
    item.className = `${e.severity || "info"}${e.kind === "metric_checked" ? " minor" : ""}`;
    item.dataset.kind = e.kind;
    const when = document.createElement("time");
    when.textContent = clock(e.at_ms);
    const text = document.createElement("span");
    text.textContent = e.message || e.kind;
    item.append(when, text);
    list.appendChild(item);
  }
}

function renderCard(c) {
  const key = keyOf(c);
  let card = document.querySelector(`article[data-canary="${CSS.escape(key)}"]`);
  if (!card) {
    card = $("card-template").content.firstElementChild.cloneNode(true);
    card.dataset.canary = key;
    card.dataset.testid = "canary";
    for (const el of card.querySelectorAll("[data-field]")) el.dataset.canary = key;
    insertSorted(card, key);
  }
  field(card, "name").textContent = c.name;
  field(card, "namespace").textContent = c.namespace;
  const phase = c.valid ? c.phase || "New" : "Invalid";
  const badge = field(card, "phase");
  badge.textContent = phase;
  badge.className = `badge ${phase}`;
  field(card, "paused").hidden = !c.paused;
  field(card, "strategy").textContent = c.strategy;
  const problems = field(card, "problems");
  problems.hidden = c.valid;
  problems.textContent = (c.problems || []).join("\n");

  field(card, "weight").textContent = String(c.weight);
  field(card, "max-weight").textContent = String(c.max_weight);
  field(card, "weight-bar").style.width = `${Math.max(0, Math.min(100, c.weight))}%`;
  field(card, "max-mark").style.left = `calc(${Math.min(100, c.max_weight)}% - 1px)`;
  sparkline(field(card, "sparkline"), c);

  field(card, "iterations").textContent = c.max_iterations
    ? `${c.iterations}/${c.max_iterations}`
    : String(c.iterations);
  const failed = field(card, "failed-checks");
  failed.textContent = `${c.failed_checks}/${c.threshold}`;
  failed.className = c.failed_checks > 0 ? "bad" : "";
  field(card, "transition").textContent = c.last_transition_time || "–";

  const gate = field(card, "gate");
  gate.hidden = !c.gate;
  gate.textContent = c.gate ? `waiting at the ${c.gate} gate` : "";

  renderMetrics(field(card, "metrics"), c);

  const control = field(card, "control");
  control.hidden = !c.control;
  if (c.control) {
    const k = c.control;
    const what = `last request: ${k.action}${k.gate ? ` (${k.gate})` : ""} by ${k.by || "?"}`;
    const when = k.requested_at ? ` at ${k.requested_at}` : "";
    const outcome = k.pending ? " — pending" : ` — ${k.outcome || "handled"}`;
    control.textContent = what + when + outcome + (k.reason ? ` (“${k.reason}”)` : "");
  }

  renderActions(field(card, "actions"), c);
  const answer = field(card, "answer");
  const said = state.answers.get(key);
  answer.hidden = !said;
  if (said) {
    answer.className = `answer ${said.cls}`;
    answer.textContent = said.text;
  }
  renderEvents(field(card, "events"), c);
}

function insertSorted(card, key) {
  const section = $("canaries");
  for (const other of section.children) {
    if (other.dataset.canary > key) {
      section.insertBefore(card, other);
      return;
    }
  }
  section.appendChild(card);
}

function renderAll() {
  const section = $("canaries");
  for (const card of [...section.children]) {
    if (!state.canaries.has(card.dataset.canary)) card.remove();
  }
  for (const c of state.canaries.values()) renderCard(c);
  renderHeader();
}

// ------------------------------------------------------------------ actions

async function act(c, action, button) {
  const key = keyOf(c);
  if ((action === "abort" || action === "reject" || action === "promote") &&
      !window.confirm(`${action} ${key}?`)) {
    return;
  }
  button.disabled = true;
  let said;
  try {
    const url = `/api/canaries/${encodeURIComponent(c.namespace)}/${encodeURIComponent(c.name)}/${action}`;
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ gate: "", reason: "" }),
    });
    const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
    if (!response.ok) {
      said = { cls: "error", text: `${action}: ${body.error || `HTTP ${response.status}`}` };
    } else if (body.accepted) {
      said = { cls: "ok", text: `${action} accepted: ${body.message}` };
    } else {
      said = { cls: "refused", text: `${action} refused: ${body.message}` };
    }
  } catch (err) {
    said = { cls: "error", text: `${action}: the dashboard did not answer (${err})` };
  }
  state.answers.set(key, said);
  button.disabled = false;
  const current = state.canaries.get(key);
  if (current) renderCard(current);
}

// ------------------------------------------------------------------ the stream

function connect() {
  const source = new EventSource("/api/stream");
  source.addEventListener("open", () => {
    state.streaming = true;
    renderHeader();
  });
  source.addEventListener("error", () => {
    state.streaming = false;
    renderHeader();
  });
  source.addEventListener("snapshot", (msg) => {
    const data = JSON.parse(msg.data);
    state.streaming = true;
    state.status = data.status;
    state.canaries = new Map(data.canaries.map((c) => [keyOf(c), c]));
    renderAll();
  });
  source.addEventListener("canary", (msg) => {
    const c = JSON.parse(msg.data);
    state.canaries.set(keyOf(c), c);
    renderCard(c);
    renderHeader();
  });
  source.addEventListener("removed", (msg) => {
    const gone = JSON.parse(msg.data);
    state.canaries.delete(keyOf(gone));
    renderAll();
  });
  source.addEventListener("event", (msg) => {
    const data = JSON.parse(msg.data);
    const c = state.canaries.get(keyOf(data));
    if (!c) return;
    const events = c.events || [];
    if (data.event.seq && events.some((e) => e.seq === data.event.seq)) return;
    c.events = [data.event, ...events].slice(0, MAX_EVENTS);
    renderCard(c);
  });
  source.addEventListener("status", (msg) => {
    state.status = JSON.parse(msg.data);
    renderHeader();
  });
}

async function start() {
  try {
    const response = await fetch("/api/config");
    state.config = await response.json();
  } catch (err) {
    state.config = { allow_actions: false, user: "" };
  }
  renderHeader();
  connect();
  // keep the sparklines' "now" moving between updates
  setInterval(() => {
    for (const c of state.canaries.values()) {
      const card = document.querySelector(`article[data-canary="${CSS.escape(keyOf(c))}"]`);
      if (card) sparkline(field(card, "sparkline"), c);
    }
  }, 5000);
}

document.addEventListener("DOMContentLoaded", start);
