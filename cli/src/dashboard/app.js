// The dashboard's page: polls /api/status and redraws. Everything from the broker (task ids,
// function and worker names, reasons) is hostile text: it only ever becomes textContent, never
// markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const POLL_MS = 1000;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function figure(name, label, value, bad) {
  return el("div", { class: "figure" + (bad ? " bad" : ""), "data-figure": name },
    el("div", { class: "value" }, value),
    el("div", { class: "label" }, label));
}

function fmtRate(r) {
  if (!isFinite(r)) return "–";
  return r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2);
}

// Completions per second between consecutive samples: [[at_ms, rate], ...].
function rates(history) {
  const out = [];
  for (let i = 1; i < history.length; i++) {
    const dt = (history[i][0] - history[i - 1][0]) / 1000;
    if (dt <= 0) continue;
    out.push([history[i][0], Math.max(0, history[i][1] - history[i - 1][1]) / dt]);
  }
  return out;
}

function recentRate(history, windowMs) {
  if (history.length < 2) return NaN;
  const last = history[history.length - 1];
  let first = history[0];
  for (const h of history) { if (last[0] - h[0] <= windowMs) { first = h; break; } }
  const dt = (last[0] - first[0]) / 1000;
  return dt > 0 ? (last[1] - first[1]) / dt : NaN;
}

function ago(ms) {
  const s = Math.round(ms / 1000);
  return s >= 60 && s % 60 === 0 ? `−${s / 60} min` : s >= 60 ? `−${(s / 60).toFixed(1)} min` : `−${s} s`;
}

function chart(history, nowMs) {
  const W = 1000, H = 170, L = 44, B = 20, T = 8;
  const box = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "completions per second" });
  const points = rates(history);
  // The x axis spans the history kept (up to 10 minutes), at least 30 s: a fresh dashboard's
  // first seconds fill the chart instead of a sliver at its right edge.
  const kept = history.length > 0 ? nowMs - history[0][0] : 0;
  const spanMs = Math.min(10 * 60 * 1000, Math.max(30 * 1000, kept));
  const max = Math.max(1, ...points.map(p => p[1]));
  const x = t => L + (W - L - 4) * (1 - Math.min(spanMs, Math.max(0, nowMs - t)) / spanMs);
  const y = r => T + (H - T - B) * (1 - r / max);
  for (const frac of [0, 0.5, 1]) {
    box.append(svg("line", { x1: L, x2: W - 4, y1: y(max * frac), y2: y(max * frac), stroke: "#e5e7eb" }));
    const label = svg("text", { x: L - 4, y: y(max * frac) + 4, "text-anchor": "end" });
    label.textContent = fmtRate(max * frac);
    box.append(label);
  }
  for (const [frac, anchor] of [[1, "start"], [0.5, "middle"], [0, "end"]]) {
    const label = svg("text", { x: x(nowMs - frac * spanMs), y: H - 4, "text-anchor": anchor });
    label.textContent = frac === 0 ? "now" : ago(frac * spanMs);
    box.append(label);
  }
  if (points.length > 0) {
    const line = points.map(p => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    const area = `${x(points[0][0]).toFixed(1)},${y(0)} ${line} ${x(points[points.length - 1][0]).toFixed(1)},${y(0)}`;
    box.append(svg("polygon", { points: area, fill: "#2563eb22" }));
    box.append(svg("polyline", { points: line, fill: "none", stroke: "#2563eb", "stroke-width": 2 }));
  }
  return box;
}

function workersTable(pool) {
  if (pool.workers.length === 0) return el("p", { class: "dim" }, "No workers.");
  const rows = pool.workers.map(w => {
    const beat = w.heartbeat_age_s == null ? "never" : `${w.heartbeat_age_s.toFixed(1)} s ago`;
    return el("tr", { "data-worker": w.name },
      el("td", {}, w.name),
      el("td", {}, w.in_flight),
      el("td", { class: w.stale ? "stale" : "fresh" }, beat + (w.stale ? " (lost?)" : "")),
      el("td", { class: "dim" }, w.description));
  });
  return el("table", {}, el("tr", {}, el("th", {}, "worker"), el("th", {}, "in flight"), el("th", {}, "heartbeat"), el("th", {}, "about")), ...rows);
}

function deadTable(pool) {
  if (pool.recent_dead.length === 0) return el("p", { class: "dim" }, "No dead letters.");
  const rows = pool.recent_dead.map(d => el("tr", { class: "dead-letter" },
    el("td", {}, d.task_id || "(no id)"),
    el("td", {}, d.function || "(no fn)"),
    el("td", {}, d.deliveries),
    el("td", {}, d.worker || "–"),
    el("td", { class: "reason" }, d.reason || `delivered ${d.deliveries} times`)));
  return el("table", {}, el("tr", {}, el("th", {}, "task"), el("th", {}, "function"), el("th", {}, "deliveries"), el("th", {}, "last worker"), el("th", {}, "reason")), ...rows);
}

// Running tasks that reported progress: id, done of total, and a bar of the ratio.
function progressTable(pool) {
  if (pool.progress.length === 0) return el("p", { class: "dim" }, "No running task has reported progress.");
  const rows = pool.progress.map(p => {
    const percent = (100 * p.ratio).toFixed(1);
    return el("tr", { class: "task-progress", "data-task": p.task_id },
      el("td", {}, p.task_id),
      el("td", {}, `${p.done} / ${p.total}`),
      // A native <progress>: no inline style, which the Content-Security-Policy forbids.
      el("td", { class: "meter" },
        el("progress", { max: "1", value: String(p.ratio) }),
        el("span", { class: "percent" }, `${percent}%`)));
  });
  return el("table", {}, el("tr", {}, el("th", {}, "task"), el("th", {}, "done / total"), el("th", {}, "progress")), ...rows);
}

function poolSection(pool, nowMs) {
  const section = el("section", { class: "pool", "data-pool": pool.name });
  section.append(el("h2", {}, `pool ${pool.name}`));
  section.append(el("div", { class: "figures" },
    figure("queued", "queued", pool.queued),
    figure("in_flight", "in flight", pool.in_flight),
    figure("chained", "chained (waiting)", pool.chained),
    figure("workers", "workers", pool.workers.length),
    figure("published", "completed", pool.published),
    figure("submitted", "submitted", pool.submitted),
    figure("rate", "per second (10 s)", fmtRate(recentRate(pool.history, 10000))),
    figure("dead_lettered", "dead-lettered", pool.dead_lettered, pool.dead_lettered > 0)));
  for (const problem of pool.problems) section.append(el("div", { class: "banner" }, problem));
  section.append(el("h3", {}, "throughput: completions per second (up to the last 10 minutes)"));
  section.append(chart(pool.history, nowMs));
  section.append(el("h3", {}, `tasks in flight with their progress (${pool.progress.length} reported)`));
  section.append(progressTable(pool));
  section.append(el("h3", {}, "workers"));
  section.append(workersTable(pool));
  section.append(el("h3", {}, `dead letters (${pool.dead_lettered}; newest first)`));
  section.append(deadTable(pool));
  section.append(el("p", { class: "dim" },
    `lease ${pool.lease_s} s · max deliveries ${pool.max_deliveries} · duplicates discarded ${pool.duplicates} · released ${pool.released} · malformed ever ${pool.malformed}`));
  return section;
}

let renders = 0;

function render(data) {
  // How many answers this page has shown: lets a test see the page update itself.
  document.body.dataset.renders = String(++renders);
  document.getElementById("broker").textContent = `broker ${data.broker}`;
  const updated = new Date(data.sampled_at_ms);
  document.getElementById("updated").textContent = data.sampled_at_ms ? `sampled ${updated.toLocaleTimeString()}` : "";
  const banner = document.getElementById("error");
  banner.hidden = !data.error;
  banner.textContent = data.error ? `The broker did not answer the last sample: ${data.error}` : "";
  const main = document.getElementById("pools");
  const sections = data.pools.map(p => poolSection(p, data.sampled_at_ms || Date.now()));
  if (sections.length === 0) sections.push(el("p", { class: "dim" }, "No pools on this broker yet."));
  main.replaceChildren(...sections);
}

async function poll() {
  try {
    const response = await fetch("/api/status", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
  } catch (e) {
    const banner = document.getElementById("error");
    banner.hidden = false;
    banner.textContent = `The dashboard server did not answer: ${e.message}`;
  }
  setTimeout(poll, POLL_MS);
}

poll();
