// GENRE's web page, part two: the Status and Experiments tabs, with hand-drawn SVG charts.
// Uses the helpers of app.js (el, svg, apiJson, api, fmt, setStatus); text only, never HTML.
"use strict";

// -- charts --------------------------------------------------------------------------------

// A long label kept to its end (route templates differ at the end), the whole in a tooltip.
function shorten(text, n) {
  const t = String(text);
  return t.length > n ? `\u2026${t.slice(t.length - n + 1)}` : t;
}

// Horizontal bars: rows [{label, value, note}] scaled to the largest value.
function barChart(title, rows, unit) {
  const figure = el("figure", { class: "chart" }, el("figcaption", { text: title }));
  if (!rows.length) {
    figure.append(el("p", { class: "muted", text: "nothing yet" }));
    return figure;
  }
  const width = 360;
  const labelW = 150;
  const rowH = 20;
  const max = Math.max(...rows.map((r) => r.value), 1e-12);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${rows.length * rowH + 4}`, role: "img",
    "aria-label": title, class: "bars" });
  rows.forEach((r, n) => {
    const y = n * rowH + 2;
    const w = Math.max(1, ((width - labelW - 70) * r.value) / max);
    const label = svg("g", {});
    label.append(svg("title", {}, r.label), svg("text", { x: labelW - 6, y: y + 13, "text-anchor": "end", class: "axis" }, shorten(r.label, 24)));
    chart.append(label);
    chart.append(svg("rect", { x: labelW, y: y + 3, width: w, height: rowH - 6, class: "bar" }));
    chart.append(svg("text", { x: labelW + w + 4, y: y + 13, class: "value" }, `${fmt(r.value, r.digits === undefined ? 0 : r.digits)}${unit || ""}`));
  });
  figure.append(chart);
  return figure;
}

// A line of values over time (the page's own samples of a counter).
function sparkline(title, points, unit) {
  const figure = el("figure", { class: "chart" }, el("figcaption", { text: title }));
  if (points.length < 2) {
    figure.append(el("p", { class: "muted", text: "two samples needed (every 5 s while this tab is open)" }));
    return figure;
  }
  const width = 360;
  const height = 60;
  const max = Math.max(...points, 1e-12);
  const step = width / (points.length - 1);
  const path = points.map((v, n) => `${n ? "L" : "M"}${(n * step).toFixed(1)},${(height - 4 - ((height - 8) * v) / max).toFixed(1)}`).join(" ");
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title, class: "spark" });
  chart.append(svg("path", { d: path, class: "line" }));
  figure.append(chart, el("p", { class: "muted", text: `now ${fmt(points[points.length - 1], 2)}${unit}, peak ${fmt(max, 2)}${unit}` }));
  return figure;
}

// Vertical bars with confidence-interval whiskers: rows [{label, value, lo, hi}].
function ciChart(title, rows) {
  const figure = el("figure", { class: "chart" }, el("figcaption", { text: title }));
  const usable = rows.filter((r) => Number.isFinite(r.value));
  if (!usable.length) {
    figure.append(el("p", { class: "muted", text: "no values" }));
    return figure;
  }
  const width = 360;
  const height = 180;
  const top = 12;
  const base = height - 34;
  const max = Math.max(...usable.map((r) => (Number.isFinite(r.hi) ? r.hi : r.value)), 1e-12) * 1.1;
  const y = (v) => base - ((base - top) * Math.max(0, v)) / max;
  const slot = (width - 40) / rows.length;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title, class: "ci" });
  chart.append(svg("line", { x1: 36, y1: base, x2: width, y2: base, class: "axisline" }));
  chart.append(svg("text", { x: 32, y: top + 4, "text-anchor": "end", class: "axis" }, fmt(max, 2)));
  chart.append(svg("text", { x: 32, y: base, "text-anchor": "end", class: "axis" }, "0"));
  rows.forEach((r, n) => {
    const cx = 40 + slot * n + slot / 2;
    const bw = Math.min(60, slot * 0.5);
    if (Number.isFinite(r.value)) {
      chart.append(svg("rect", { x: cx - bw / 2, y: y(r.value), width: bw, height: base - y(r.value), class: `bar v${n % 4}` }));
    }
    if (Number.isFinite(r.lo) && Number.isFinite(r.hi)) {
      chart.append(svg("line", { x1: cx, y1: y(r.lo), x2: cx, y2: y(r.hi), class: "whisker" }));
      for (const v of [r.lo, r.hi]) chart.append(svg("line", { x1: cx - 8, y1: y(v), x2: cx + 8, y2: y(v), class: "whisker" }));
    }
    chart.append(svg("text", { x: cx, y: base + 14, "text-anchor": "middle", class: "axis" }, r.label));
    chart.append(svg("text", { x: cx, y: base + 28, "text-anchor": "middle", class: "value" },
      `${fmt(r.value)} [${fmt(r.lo)}, ${fmt(r.hi)}]`));
  });
  figure.append(chart);
  return figure;
}

// -- status --------------------------------------------------------------------------------

// Prometheus text format: [{name, labels, value}].
function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const lm of (m[3] || "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[lm[1]] = lm[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

function sumBy(samples, name, label) {
  const out = new Map();
  for (const s of samples) {
    if (s.name !== name) continue;
    const key = label ? s.labels[label] : "";
    out.set(key, (out.get(key) || 0) + s.value);
  }
  return out;
}

function metricCharts(samples) {
  const counts = sumBy(samples, "genre_http_request_seconds_count", "endpoint");
  const sums = sumBy(samples, "genre_http_request_seconds_sum", "endpoint");
  const requests = [...counts].map(([label, value]) => ({ label, value })).sort((a, b) => b.value - a.value);
  const latency = [...counts].filter(([, n]) => n > 0)
    .map(([label, n]) => ({ label, value: (1000 * (sums.get(label) || 0)) / n, digits: 1 }))
    .sort((a, b) => b.value - a.value);
  const buckets = sumBy(samples, "genre_http_request_seconds_bucket", "le");
  const edges = [...buckets.keys()].sort((a, b) => Number(a) - Number(b));
  const hist = edges.map((le, n) => ({ label: le === "+Inf" ? "> " + edges[n - 1] + " s" : `\u2264 ${le} s`,
    value: buckets.get(le) - (n ? buckets.get(edges[n - 1]) : 0) }));
  const llm = [];
  for (const [kind, v] of sumBy(samples, "genre_llm_tokens_total", "kind")) llm.push({ label: `${kind} tokens`, value: v });
  const calls = sumBy(samples, "genre_llm_calls_total");
  if (calls.size) llm.push({ label: "LLM calls", value: calls.get("") });
  const missing = sumBy(samples, "genre_missing_rationales_total");
  if (missing.size) llm.push({ label: "missing rationales", value: missing.get("") });
  const fallbacks = [...sumBy(samples, "genre_fallbacks_total", "reason")].map(([label, value]) => ({ label, value }));
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  const now = Date.now() / 1000;
  const hist2 = state.metricsHistory;
  hist2.push({ t: now, total });
  if (hist2.length > 61) hist2.shift();
  const rates = hist2.slice(1).map((p, n) => Math.max(0, (p.total - hist2[n].total) / Math.max(1e-3, p.t - hist2[n].t)));
  return [barChart("Requests per endpoint", requests), barChart("Mean latency per endpoint", latency, " ms"),
    barChart("Latency distribution (all requests)", hist.filter((h) => h.value > 0)),
    sparkline("Requests per second", rates, "/s"), barChart("LLM use", llm),
    barChart("Fallbacks by reason", fallbacks)];
}

function fact(dl, name, value) {
  dl.append(el("dt", { text: name }), el("dd", { text: value }));
}

function modelsTable(models) {
  const table = $("models");
  const names = Object.keys(models || {});
  if (!names.length) {
    table.replaceChildren(el("caption", { text: "No fitted models loaded (run genre fit)." }));
    return;
  }
  const cols = [...new Set(names.flatMap((n) => Object.keys(models[n] || {})))];
  const cell = (v) => {
    const text = v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
    // A digest shown by its first 12 characters (like the CLI), the whole in a tooltip.
    return /^[0-9a-f]{40,}$/.test(text) ? el("td", { title: text, text: `${text.slice(0, 12)}\u2026` }) : el("td", { text });
  };
  table.replaceChildren(el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "model" }), cols.map((c) => el("th", { scope: "col", text: c })))),
    el("tbody", {}, names.map((n) => el("tr", {}, el("th", { scope: "row", text: n }), cols.map((c) => cell((models[n] || {})[c]))))));
}

async function refreshStatus() {
  const dl = $("health");
  const facts = [];
  try {
    const live = await fetch("/health/live");
    facts.push(["live", live.ok ? "yes" : `no (${live.status})`]);
    const resp = await fetch("/health/ready");
    const ready = await resp.json().catch(() => ({}));
    facts.push(["ready", ready.status || String(resp.status)]);
    if (ready.error) facts.push(["error", ready.error]);
    for (const k of ["items", "engine", "load_seconds"]) if (ready[k] !== undefined) facts.push([k.replace("_", " "), String(ready[k])]);
    modelsTable(ready.models);
  } catch (err) {
    facts.push(["error", err.message]);
  }
  dl.replaceChildren();
  facts.forEach(([k, v]) => fact(dl, k, v));
  try {
    const resp = await api("/metrics");
    if (!resp.ok) throw new Error(`${resp.status}`);
    $("metrics").replaceChildren(...metricCharts(parseMetrics(await resp.text())));
  } catch (err) {
    $("metrics").replaceChildren(el("p", { class: "error", text: `Could not read /metrics: ${err.message}` }));
  }
  $("status-time").textContent = `Updated ${new Date().toLocaleTimeString()}`;
}

// -- experiments ---------------------------------------------------------------------------

function experimentNames(body) {
  const list = Array.isArray(body) ? body : (body && (body.experiments || body.items || body.names)) || [];
  return list.map((e) => (typeof e === "string" ? e : e && e.name)).filter((n) => typeof n === "string");
}

function noExperiments(text) {
  $("exp-name").replaceChildren();
  for (const id of ["exp-chart", "exp-table", "exp-warnings", "exp-test"]) $(id).replaceChildren();
  $("exp-title").textContent = "";
  setStatus("exp-status", text);
}

async function loadExperiments() {
  let names;
  try {
    const resp = await api("/v1/experiments");
    if (resp.status === 404) return noExperiments("No experiments configured (service.experiments).");
    const body = await resp.json().catch(() => null);
    if (!resp.ok) throw new Error(detailOf(body, resp.statusText));
    names = experimentNames(body);
  } catch (err) {
    return setStatus("exp-status", `Could not list experiments: ${err.message}`, true);
  }
  if (!names.length) return noExperiments("No experiments configured (service.experiments).");
  const chosen = $("exp-name").value;
  $("exp-name").replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
  if (names.includes(chosen)) $("exp-name").value = chosen;
  showExperiment($("exp-name").value);
}

// A test's value in words: numbers to 4 places, {a: 3, b: 2} as "a 3, b 2".
function testValue(v) {
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : fmt(v, 4);
  if (Array.isArray(v)) return v.map((x) => (typeof x === "object" && x !== null ? JSON.stringify(x) : testValue(x))).join(", ");
  if (v && typeof v === "object") return Object.entries(v).map(([k, x]) => `${k} ${testValue(x)}`).join(", ");
  return v === null || v === undefined ? "none" : String(v);
}

function showTest(test) {
  const dl = $("exp-test");
  dl.replaceChildren();
  if (!test || typeof test !== "object") return;
  const p = Number(test.p_value);
  const alpha = Number.isFinite(Number(test.alpha)) ? Number(test.alpha) : 0.05;
  if (Number.isFinite(p)) {
    fact(dl, "verdict", test.favours ? `favours ${test.favours} (p = ${fmt(p, 4)} < ${alpha})`
      : `no difference found (p = ${fmt(p, 4)}, alpha ${alpha})`);
  }
  for (const [k, v] of Object.entries(test)) {
    if (k === "comparisons" && Array.isArray(v)) {
      v.forEach((c, n) => fact(dl, `comparison ${n + 1}`, testValue(c && typeof c === "object" ? c : { value: c })));
    } else fact(dl, k.replace(/_/g, " "), testValue(v));
  }
}

async function showExperiment(name) {
  if (!name) return;
  setStatus("exp-status", "Loading\u2026");
  let report;
  try {
    const resp = await api(`/v1/experiments/${encodeURIComponent(name)}`);
    if (resp.status === 404) return noExperiments(`No experiment ${name} configured.`);
    report = await resp.json().catch(() => null);
    if (!resp.ok) throw new Error(detailOf(report, resp.statusText));
  } catch (err) {
    return setStatus("exp-status", `Could not load ${name}: ${err.message}`, true);
  }
  const variants = Array.isArray(report && report.variants) ? report.variants : [];
  const ci = (v, key) => (Array.isArray(v[`${key}_ci`]) ? v[`${key}_ci`].map(Number) : [NaN, NaN]);
  const rows = (key) => variants.map((v) => ({ label: String(v.name), value: Number(v[key]), lo: ci(v, key)[0], hi: ci(v, key)[1] }));
  $("exp-title").textContent = `${report.experiment || name} (${report.kind || "?"})`;
  const rateName = report.kind === "interleave" ? "Credited clicks per impression" : "Positives per impression";
  $("exp-chart").replaceChildren(ciChart(`${rateName}, 95% CI`, rows("rate")), ciChart("MRR of the first positive, 95% CI", rows("mrr")));
  const cols = ["users", "exposures", "rate", "mrr", "llm_tokens", "llm_seconds"];
  const cell = (v, c) => {
    const x = v[c];
    if (c === "rate" || c === "mrr") return `${fmt(Number(x))} [${ci(v, c).map((e) => fmt(e)).join(", ")}]`;
    return typeof x === "number" ? (Number.isInteger(x) ? String(x) : fmt(x, 2)) : x === undefined ? "n/a" : String(x);
  };
  $("exp-table").replaceChildren(el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "variant" }), cols.map((c) => el("th", { scope: "col", text: c.replace("_", " ") })))),
    el("tbody", {}, variants.map((v) => el("tr", {}, el("th", { scope: "row", text: String(v.name) }), cols.map((c) => el("td", { text: cell(v, c) }))))));
  $("exp-warnings").replaceChildren(...(Array.isArray(report.warnings) ? report.warnings : []).map((w) => el("li", { text: String(w) })));
  showTest(report.test);
  setStatus("exp-status", variants.length ? `${variants.length} variants.` : "The report has no variants yet.");
}
