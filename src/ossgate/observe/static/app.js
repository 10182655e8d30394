// ossgate trace dashboard: plain JS + SVG, no external assets (works air-gapped).
// Every data call sends the API key (kept in localStorage) as a Bearer token.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { offset: 0, limit: 50, current: null };

function key() { return localStorage.getItem("ossgate.apiKey") || ""; }

// Filters fire a refresh on every change, and answers can come back out of order: each loader keeps only
// the answer to its newest call, so a slower, older one never overwrites the table or charts of a newer one.
const newest = {};
function ticket(name) { const n = (newest[name] = (newest[name] || 0) + 1); return () => newest[name] === n; }

async function api(path, options = {}) {
  const headers = Object.assign({ "authorization": "Bearer " + key() }, options.headers || {});
  const r = await fetch(path, Object.assign({}, options, { headers }));
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    const msg = (body.error && body.error.message) || body.detail || r.statusText;
    throw new Error(r.status + ": " + (typeof msg === "string" ? msg : JSON.stringify(msg)));
  }
  return body;
}

function say(text) { $("#message").textContent = text || ""; }
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}
const fmtS = (s) => s == null ? "–" : s < 1 ? (s * 1000).toFixed(0) + " ms" : s.toFixed(2) + " s";
const fmtUsd = (x) => x == null ? "–" : x === 0 ? "0" : x < 0.01 ? x.toExponential(2) : x.toFixed(4);
const fmtTime = (ms) => new Date(ms).toLocaleString();

function filterParams() {
  const p = new URLSearchParams({ since: $("#range").value });
  const q = $("#q").value.trim(); if (q) p.set("q", q);
  for (const [id, name] of [["#f-model", "model"], ["#f-status", "status"], ["#f-key", "key_id"]]) {
    if ($(id).value) p.set(name, $(id).value);
  }
  if ($("#f-fallback").checked) p.set("fallback", "true");
  return p;
}

// ---- charts: one small SVG line chart per metric group ----
const COLORS = ["#2f6feb", "#d1242f", "#1a7f37", "#9a6700"];
function lineChart(svg, points, series) {
  const W = svg.clientWidth || 320, H = svg.clientHeight || 160, L = 44, R = 8, T = 8, B = 18;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.innerHTML = "";
  const ns = "http://www.w3.org/2000/svg";
  const add = (tag, attrs, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text != null) n.textContent = text;
    svg.append(n); return n;
  };
  if (!points.length) { add("text", { x: W / 2 - 20, y: H / 2 }, "no data"); return; }
  const xs = points.map((p) => p.t);
  const x0 = Math.min(...xs), x1 = Math.max(...xs) || x0 + 1;
  let ymax = 0;
  for (const s of series) for (const p of points) ymax = Math.max(ymax, p[s.key] || 0);
  ymax = ymax || 1;
  const sx = (t) => L + (x1 === x0 ? (W - L - R) / 2 : (t - x0) / (x1 - x0) * (W - L - R));
  const sy = (v) => H - B - (v / ymax) * (H - T - B);
  add("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#ccc" });
  add("text", { x: 2, y: T + 8 }, ymax < 0.01 ? ymax.toExponential(1) : +ymax.toPrecision(3));
  add("text", { x: 2, y: H - B }, "0");
  add("text", { x: L, y: H - 4 }, new Date(x0 * 1000).toLocaleTimeString());
  add("text", { x: W - R - 60, y: H - 4 }, new Date(x1 * 1000).toLocaleTimeString());
  series.forEach((s, i) => {
    const pts = points.filter((p) => p[s.key] != null).map((p) => `${sx(p.t).toFixed(1)},${sy(p[s.key]).toFixed(1)}`);
    if (pts.length === 1) {
      const [cx, cy] = pts[0].split(","); add("circle", { cx, cy, r: 3, fill: COLORS[i] });
    } else if (pts.length) {
      add("polyline", { points: pts.join(" "), fill: "none", stroke: COLORS[i], "stroke-width": 1.5, "data-series": s.key });
    }
    add("text", { x: L + 6 + i * 70, y: T + 8, class: "legend", fill: COLORS[i], style: `fill:${COLORS[i]}` }, s.label);
  });
}

function breakdownTable(table, rows, label) {
  table.innerHTML = "";
  table.append(el("tr", {}, el("th", {}, label), el("th", {}, "requests"), el("th", {}, "tokens"),
    el("th", {}, "token $"), el("th", {}, "hardware $")));
  for (const r of rows) {
    table.append(el("tr", {}, el("td", {}, r[label] ?? "–"), el("td", {}, r.requests),
      el("td", {}, r.input_tokens + r.output_tokens), el("td", {}, fmtUsd(r.cost_tokens_usd)),
      el("td", {}, fmtUsd(r.cost_hardware_usd))));
  }
}

async function loadStats() {
  const current = ticket("stats");
  const s = await api("/v1/traces/stats?" + filterParams());
  if (!current()) return;
  const t = s.totals;
  const card = (v, label) => el("div", { class: "card" }, el("b", {}, String(v)), el("span", {}, label));
  $("#summary").replaceChildren(card(t.requests, "requests"), card(t.errors, "errors"),
    card(t.input_tokens + t.output_tokens, "tokens"), card(fmtUsd(t.cost_tokens_usd), "token cost $"),
    card(fmtUsd(t.cost_hardware_usd), "hardware cost $"), card(t.fallbacks, "fallbacks"));
  lineChart($("#chart-requests"), s.series, [{ key: "requests", label: "requests" }, { key: "errors", label: "errors" }]);
  lineChart($("#chart-latency"), s.series, [{ key: "latency_p50_s", label: "p50" }, { key: "latency_p90_s", label: "p90" },
    { key: "latency_p99_s", label: "p99" }]);
  lineChart($("#chart-tokens"), s.series, [{ key: "input_tokens", label: "in" }, { key: "output_tokens", label: "out" }]);
  lineChart($("#chart-cost"), s.series, [{ key: "cost_tokens_usd", label: "tokens" }, { key: "cost_hardware_usd", label: "hardware" }]);
  breakdownTable($("#by-key"), s.by_key, "key_id");
  breakdownTable($("#by-day"), s.by_day, "day");
}

async function loadFacets() {
  const current = ticket("facets");
  const f = await api("/v1/traces/facets");
  if (!current()) return;
  for (const [id, values] of [["#f-model", f.model], ["#f-key", f.key_id]]) {
    const sel = $(id), keep = sel.value;
    while (sel.options.length > 1) sel.remove(1);
    for (const v of values) sel.append(el("option", { value: v }, v));
    sel.value = keep;
  }
}

async function loadTraces(append = false) {
  if (!append) state.offset = 0;
  const p = filterParams(); p.set("limit", state.limit); p.set("offset", state.offset);
  const current = ticket("traces");
  const page = await api("/v1/traces?" + p);
  if (!current()) return;
  const body = $("#traces tbody");
  if (!append) body.innerHTML = "";
  for (const t of page.data) {
    body.append(el("tr", { "data-trace-id": t.trace_id, onclick: () => showTrace(t.trace_id) },
      el("td", {}, fmtTime(t.started_ms)), el("td", {}, el("code", {}, t.trace_id.slice(0, 12))),
      el("td", {}, t.model ?? "–"), el("td", {}, t.key_id ?? "–"),
      el("td", { class: "status-" + t.status }, t.status + (t.error_type ? " · " + t.error_type : "")),
      el("td", {}, fmtS(t.latency_s)), el("td", {}, fmtS(t.ttft_s)),
      el("td", {}, `${t.input_tokens} / ${t.output_tokens}`),
      el("td", {}, fmtUsd(t.cost_tokens_usd + t.cost_hardware_usd)), el("td", { class: "preview" }, t.preview ?? "")));
  }
  state.offset += page.data.length;
  $("#more").hidden = !page.has_more;
  if (!append && !page.data.length) body.append(el("tr", {}, el("td", { colspan: 10 }, "no traces match")));
}

function waterfall(spans, total) {
  const box = $("#waterfall"); box.innerHTML = "";
  const depth = {};
  for (const s of spans) depth[s.span_id] = s.parent_id && depth[s.parent_id] != null ? depth[s.parent_id] + 1 : 0;
  const span = Math.max(total, 0.001);
  for (const s of spans) {
    const end = s.end_ms ?? s.start_ms;
    const bar = el("div", { class: "wf-bar" + (s.status === "error" ? " error" : ""),
      style: `left:${(s.start_ms / span * 100).toFixed(2)}%;width:${((end - s.start_ms) / span * 100).toFixed(2)}%`,
      title: JSON.stringify(s.attrs) });
    box.append(el("div", { class: "wf-row", "data-span": s.name },
      el("span", { style: `padding-left:${depth[s.span_id]}em` }, s.name),
      el("div", { class: "wf-track" }, bar), el("span", {}, (end - s.start_ms).toFixed(1) + " ms")));
  }
}

function content(t) {
  const box = $("#d-content"); box.innerHTML = "";
  const msgs = Array.isArray(t.prompt) ? t.prompt : t.prompt != null ? [{ role: "prompt", content: t.prompt }] : [];
  for (const m of msgs) box.append(el("div", { class: "msg" }, el("b", {}, m.role), m.content ?? ""));
  if (t.reasoning != null) box.append(el("div", { class: "msg" }, el("b", {}, "reasoning"), t.reasoning));
  if (t.response != null) box.append(el("div", { class: "msg", "data-testid": "response" }, el("b", {}, "response"), t.response));
  if (!box.children.length) box.append(el("p", {}, `content not captured (capture = ${t.capture})`));
}

async function showTrace(id) {
  try {
    const t = await api("/v1/traces/" + encodeURIComponent(id));
    state.current = id;
    $("#d-id").textContent = t.trace_id;
    const facts = [["time", fmtTime(t.started_ms)], ["status", `${t.status} ${t.http_status ?? ""} ${t.error_type ?? ""}`],
      ["model / backend", `${t.model ?? "–"} / ${t.backend ?? "–"}` + (t.fallback ? ` (fallback from ${t.fallback_from})` : "")],
      ["tenant / key", `${t.tenant_id ?? "–"} / ${t.key_id ?? "–"}`], ["user / session", `${t.user_id ?? "–"} / ${t.session_id ?? "–"}`],
      ["latency", fmtS(t.latency_s)], ["TTFT", fmtS(t.ttft_s)], ["time / output token", fmtS(t.tpot_s)],
      ["tokens", `in ${t.input_tokens} (cached ${t.cached_tokens}) · out ${t.output_tokens} (reasoning ${t.reasoning_tokens})`],
      ["cost $", `tokens ${fmtUsd(t.cost_tokens_usd)} · hardware ${fmtUsd(t.cost_hardware_usd)}`]];
    $("#d-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    waterfall(t.spans, t.latency_s * 1000);
    content(t);
    $("#d-scores").replaceChildren(...(t.scores.length ? t.scores.map((s) => el("li", {},
      `${s.name} · ${s.kind} · ${s.label ?? s.value}` + (s.comment ? ` — ${s.comment}` : ""))) : [el("li", {}, "none yet")]));
    $("#detail").hidden = false;
  } catch (e) { say(e.message); }
}

async function thumb(value) {
  if (!state.current) return;
  try {
    await api(`/v1/traces/${state.current}/scores`, { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ kind: "thumbs", value, comment: $("#score-comment").value || null }) });
    $("#score-comment").value = "";
    await showTrace(state.current);
  } catch (e) { say(e.message); }
}

async function refresh() {
  if (!key()) { say("Enter an API key to see traces."); return; }
  say("");
  try { await Promise.all([loadStats(), loadFacets(), loadTraces()]); }
  catch (e) { say(e.message); }
}

let searchTimer = null;
$("#key-form").addEventListener("submit", (e) => { e.preventDefault(); localStorage.setItem("ossgate.apiKey", $("#api-key").value.trim()); $("#api-key").value = ""; refresh(); });
$("#refresh").addEventListener("click", refresh);
for (const id of ["#range", "#f-model", "#f-status", "#f-key", "#f-fallback"]) $(id).addEventListener("change", refresh);
$("#q").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(refresh, 250); });
$("#more").addEventListener("click", () => loadTraces(true).catch((e) => say(e.message)));
$("#close-detail").addEventListener("click", () => { $("#detail").hidden = true; state.current = null; });
for (const b of document.querySelectorAll("[data-thumb]")) b.addEventListener("click", () => thumb(b.dataset.thumb));
refresh();
