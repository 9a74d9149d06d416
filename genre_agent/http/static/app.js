// GENRE's web page: recommendations with streamed rationales, chat, status, experiments.
// Every string that comes from the API (titles, rationales, messages) is put in the page
// as text (textContent / text nodes), never parsed as HTML.
"use strict";

const KEY_STORE = "genre.apiKey";
const state = { keyHeader: "X-API-Key", keyRequired: false, session: null, users: new Set(),
  metricsHistory: [], statusTimer: null };

// -- small DOM helpers ---------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = String(value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function setStatus(id, text, isError) {
  const node = $(id);
  node.textContent = text;
  node.classList.toggle("error", Boolean(isError));
}

function fmt(value, digits) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "n/a";
  return value.toFixed(digits === undefined ? 3 : digits);
}

function randomId() {
  // crypto.randomUUID needs a secure context; getRandomValues does not.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// -- the API -------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
    this.detail = detail;
  }
}

function detailOf(body, fallback) {
  if (body && typeof body.message === "string") return body.message;
  if (body && typeof body.detail === "string") return body.detail;
  if (body && body.detail !== undefined) return JSON.stringify(body.detail);
  return fallback;
}

async function api(path, options) {
  const opts = options || {};
  const headers = new Headers(opts.headers || {});
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) headers.set(state.keyHeader, key);
  let body;
  if (opts.json !== undefined) {
    headers.set("Content-Type", "application/json");
    body = JSON.stringify(opts.json);
  }
  const resp = await fetch(path, { method: opts.method || "GET", headers, body });
  if (resp.status === 401) {
    sessionStorage.removeItem(KEY_STORE);
    showKeyPanel("The service refused the key: enter it again.");
    throw new ApiError(401, "missing or wrong API key");
  }
  return resp;
}

async function apiJson(path, options) {
  const resp = await api(path, options);
  const body = await resp.json().catch(() => null);
  if (!resp.ok) throw new ApiError(resp.status, detailOf(body, resp.statusText));
  return body;
}

// Server-sent events read from a fetch() body: EventSource cannot send the key header.
async function* sseEvents(resp) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

// -- the API key ---------------------------------------------------------------------------

function showKeyPanel(message) {
  $("key-panel").hidden = false;
  document.querySelectorAll(".view").forEach((v) => { v.hidden = true; });
  $("key-error").textContent = message || "";
  $("key-input").value = "";
  $("key-input").focus();
}

async function useKey(event) {
  event.preventDefault();
  const key = $("key-input").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_STORE, key);
  try {
    await apiJson("/v1/sessions?limit=1");
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) $("key-error").textContent = String(err.message);
    return;
  }
  $("key-panel").hidden = true;
  $("forget-key").hidden = false;
  start();
}

function forgetKey() {
  // Stop the status tab's refresh: without the key its next /metrics call would be a 401.
  clearInterval(state.statusTimer);
  state.statusTimer = null;
  sessionStorage.removeItem(KEY_STORE);
  $("forget-key").hidden = true;
  showKeyPanel("");
}

// -- tabs ----------------------------------------------------------------------------------

function selectTab(name) {
  for (const tab of document.querySelectorAll("[role=tab]")) {
    const on = tab.id === `tab-${name}`;
    tab.setAttribute("aria-selected", String(on));
    $(tab.getAttribute("aria-controls")).hidden = !on;
  }
  clearInterval(state.statusTimer);
  state.statusTimer = null;
  if (name === "status") {
    refreshStatus();
    state.statusTimer = setInterval(refreshStatus, 5000);
  } else if (name === "experiments") {
    loadExperiments();
  } else if (name === "chat") {
    refreshSessions();
  }
}

// -- recommendations -----------------------------------------------------------------------

function chipList(label, values, cls) {
  if (!values || values.length === 0) return null;
  return el("div", { class: "evidence-row" }, el("span", { class: "label", text: label }),
    ...values.map((v) => el("span", { class: `chip ${cls || ""}`, text: v })));
}

function evidenceBlock(item) {
  const ev = item.evidence;
  const box = el("div", { class: "evidence", "aria-label": "Evidence" });
  if (!ev) {
    box.append(el("p", { class: "muted", text: "No evidence computed." }));
    return box;
  }
  const cites = new Set(item.cites || []);
  const liked = (ev.history || []).map((s) => el("li", { "data-id": s.id, class: cites.has(s.id) ? "cited" : null },
    el("span", { class: "title", text: s.title }),
    el("span", { class: "muted", text: ` ${fmt(s.similarity, 2)} \u00b7 ${(s.by || []).join(", ")}` })));
  if (liked.length) box.append(el("div", { class: "label", text: "Like what you liked" }), el("ul", { class: "liked" }, liked));
  const shared = chipList("Shared", ev.shared);
  if (shared) box.append(shared);
  const asked = chipList("Your words", ev.request);
  if (asked) box.append(asked);
  const signals = Object.entries(ev.signals || {}).map(([s, r]) => `${s} #${r}`);
  const sig = chipList("Sources", signals, "quiet");
  if (sig) box.append(sig);
  return box;
}

function metaLine(item) {
  const meta = item.metadata || {};
  const parts = [];
  if (meta.year !== undefined) parts.push(String(meta.year));
  if (typeof meta.genres === "string") parts.push(meta.genres.split("|").join(", "));
  return parts.join(" · ");
}

function pickCard(ranked, ctx) {
  const item = ranked.item;
  const li = el("li", { class: "pick", "data-id": item.id });
  const title = el("h3", { class: "title", text: item.title });
  const buttons = el("div", { class: "actions" });
  if (ctx.feedback) {
    for (const [type, glyph, word] of [["like", "\u25B2", "Like"], ["dislike", "\u25BC", "Dislike"]]) {
      buttons.append(el("button", { type: "button", class: `fb ${type}`, "aria-pressed": "false",
        "aria-label": `${word}: ${item.title}`, onclick: (e) => sendFeedback(e.currentTarget, ctx, item, type) },
      el("span", { "aria-hidden": "true", text: glyph }), ` ${word}`));
    }
  }
  buttons.append(el("button", { type: "button", class: "similar", "aria-label": `Similar to ${item.title}`,
    onclick: () => showSimilar(item) }, "Similar"));
  const rationale = el("p", { class: "rationale pending" }, ctx.explain ? "Writing the rationale\u2026" : "");
  if (ranked.rationale) setRationale(rationale, ranked);
  li.append(el("div", { class: "pick-head" }, el("span", { class: "rank", text: ranked.rank }), el("div", {}, title,
    el("div", { class: "meta muted", text: metaLine(item) })), buttons),
  el("div", { class: "pick-body" }, rationale, evidenceBlock(ranked)));
  return li;
}

function setRationale(node, ranked) {
  node.classList.remove("pending");
  node.classList.add("written");
  node.replaceChildren(document.createTextNode(ranked.rationale));
  if (ranked.unsupported_terms && ranked.unsupported_terms.length) {
    node.append(el("span", { class: "unsupported muted",
      text: ` (words its evidence does not hold: ${ranked.unsupported_terms.join(", ")})` }));
  }
}

function markRationale(list, ranked) {
  const card = Array.from(list.children).find((c) => c.dataset.id === ranked.item.id);
  if (!card) return;
  setRationale(card.querySelector(".rationale"), ranked);
  card.querySelector(".evidence").replaceWith(evidenceBlock(ranked));
}

function finishList(list, rec) {
  const missing = new Set((rec.trace && rec.trace.missing_rationales) || []);
  const fallback = rec.trace && rec.trace.fallback;
  for (const card of list.querySelectorAll(".rationale.pending")) {
    card.classList.remove("pending");
    card.classList.add("none");
    const id = card.closest(".pick").dataset.id;
    card.textContent = missing.has(id) ? `No rationale: the LLM stage stopped (${fallback || "missing"}).`
      : "No rationale (only the top picks are explained: ranking.rationale_top_r).";
  }
}

function recordUser(user) {
  if (!user || state.users.has(user)) return;
  state.users.add(user);
  $("known-users").append(el("option", { value: user }));
}

async function recommend(event) {
  event.preventDefault();
  const user = $("rec-user").value.trim();
  const query = $("rec-query").value.trim();
  const k = Number($("rec-k").value) || 5;
  const list = $("rec-list");
  if (!user && !query) {
    setStatus("rec-status", "Give a user id, a query, or both.", true);
    return;
  }
  recordUser(user);
  const body = { k, explain: true };
  if (user) body.user_id = user;
  if (query) body.query = query;
  list.replaceChildren();
  list.dataset.state = "waiting";
  $("rec-notes").replaceChildren();
  $("rec-submit").disabled = true;
  setStatus("rec-status", "Ranking\u2026");
  const ctx = { feedback: Boolean(user), user, explain: true, requestId: null };
  try {
    const resp = await api("/v1/recommend", { method: "POST", json: body, headers: { Accept: "text/event-stream" } });
    if (!resp.ok) {
      const err = await resp.json().catch(() => null);
      throw new ApiError(resp.status, detailOf(err, resp.statusText));
    }
    let written = 0;
    for await (const { event: kind, data } of sseEvents(resp)) {
      if (kind === "ranked") {
        ctx.requestId = data.request_id;
        list.replaceChildren(...data.items.map((it) => pickCard(it, ctx)));
        list.dataset.state = "ranked";
        setStatus("rec-status", `${data.items.length} picks; writing the rationales\u2026`);
      } else if (kind === "rationale") {
        markRationale(list, data);
        written += 1;
      } else if (kind === "done") {
        finishList(list, data);
        list.dataset.state = "done";
        const tr = data.trace || {};
        setStatus("rec-status", `${data.items.length} picks, ranked by ${tr.ranked_by || "?"}; ` +
          `${written} rationales${tr.fallback ? ` (fallback: ${tr.fallback})` : ""}.` +
          (user ? "" : " Feedback needs a user id."));
        $("rec-notes").replaceChildren(...(tr.notes || []).map((n) => el("li", { text: n })));
      }
    }
  } catch (err) {
    list.dataset.state = "error";
    setStatus("rec-status", `Failed: ${err.message}`, true);
  } finally {
    $("rec-submit").disabled = false;
  }
}

async function sendFeedback(button, ctx, item, type) {
  const event = { event_id: randomId(), user_id: ctx.user, item_id: item.id, type };
  if (ctx.requestId) event.request_id = ctx.requestId;
  button.disabled = true;
  try {
    await apiJson("/v1/feedback", { method: "POST", json: { events: [event] } });
    button.setAttribute("aria-pressed", "true");
    setStatus("rec-status", `Sent: ${type} of ${item.title}. The next answer for ${ctx.user} takes it into account.`);
  } catch (err) {
    button.disabled = false;
    setStatus("rec-status", `Feedback failed: ${err.message}`, true);
  }
}

async function showSimilar(item) {
  const panel = $("similar-panel");
  panel.hidden = false;
  $("similar-title").textContent = `Similar to ${item.title}`;
  const list = $("similar-list");
  list.replaceChildren();
  setStatus("similar-status", "Looking\u2026");
  try {
    const k = Number($("rec-k").value) || 5;
    const rec = await apiJson(`/v1/items/${encodeURIComponent(item.id)}/similar?k=${k}&explain=false`);
    const user = $("rec-user").value.trim();
    const ctx = { feedback: Boolean(user), user, explain: false, requestId: rec.request_id };
    list.replaceChildren(...rec.items.map((it) => pickCard(it, ctx)));
    setStatus("similar-status", `${rec.items.length} items.`);
  } catch (err) {
    setStatus("similar-status", `Failed: ${err.message}`, true);
  }
  panel.scrollIntoView({ block: "nearest" });
}

// -- chat ----------------------------------------------------------------------------------

function genreName(key) {
  return key.replace(/^genre_/, "").split("_").map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join("-");
}

// A chat turn's Chroma filter as wishes: {"$and": [{"year": {"$gte": 2000}}, {"genre_horror": {"$ne": true}}]}.
function wishesOf(where) {
  const out = [];
  const walk = (clause) => {
    if (!clause || typeof clause !== "object") return;
    for (const [key, value] of Object.entries(clause)) {
      if (key === "$and" && Array.isArray(value)) value.forEach(walk);
      else if (key === "$or" && Array.isArray(value)) out.push({ text: `one of: ${value.map((v) => wishesOf(v).map((w) => w.text).join(" & ")).join(" | ")}`, cls: "" });
      else if (key.startsWith("genre_") && value === true) out.push({ text: genreName(key), cls: "include" });
      else if (key.startsWith("genre_") && value && value.$ne === true) out.push({ text: `no ${genreName(key)}`, cls: "exclude" });
      else if (value && typeof value === "object") {
        const ops = { $gte: "\u2265", $lte: "\u2264", $gt: ">", $lt: "<", $ne: "\u2260", $eq: "=", $in: "in", $nin: "not in" };
        for (const [op, v] of Object.entries(value)) out.push({ text: `${key} ${ops[op] || op} ${Array.isArray(v) ? v.join(", ") : v}`, cls: op === "$ne" || op === "$nin" ? "exclude" : "" });
      } else out.push({ text: `${key} = ${value}`, cls: "" });
    }
  };
  walk(where);
  return out;
}

function stateWishes(s) {
  const out = [];
  (s.genres_include || []).forEach((g) => out.push({ text: g, cls: "include" }));
  (s.genres_exclude || []).forEach((g) => out.push({ text: `no ${g}`, cls: "exclude" }));
  if (s.year_min !== null && s.year_min !== undefined) out.push({ text: `from ${s.year_min}`, cls: "" });
  if (s.year_max !== null && s.year_max !== undefined) out.push({ text: `until ${s.year_max}`, cls: "" });
  if (s.query) out.push({ text: `\u201c${s.query}\u201d`, cls: "" });
  if ((s.rejected || []).length) out.push({ text: `${s.rejected.length} turned down`, cls: "exclude" });
  if ((s.seeds || []).length) out.push({ text: `more like ${s.seeds.length} picks`, cls: "" });
  return out;
}

function chips(wishes, empty) {
  if (!wishes.length) return [el("span", { class: "muted", text: empty })];
  return wishes.map((w) => el("span", { class: `chip ${w.cls}`, text: w.text }));
}

function turnCard(turn) {
  const li = el("li", { class: "turn", "data-n": turn.n });
  li.append(el("p", { class: "message" }, el("span", { class: "label", text: `You (turn ${turn.n})` }), " ",
    el("span", { class: "said", text: turn.message })));
  li.append(el("div", { class: "chips wishes" }, el("span", { class: "label", text: "Wishes" }),
    chips(wishesOf(turn.where), "none")));
  if (turn.error) li.append(el("p", { class: "error", text: turn.error }));
  if ((turn.relaxed || []).length) li.append(el("p", { class: "muted", text: `Dropped to find anything: ${turn.relaxed.join(", ")}` }));
  const picks = (turn.picks || []).map((p) => el("li", { class: "chat-pick", "data-id": p.id },
    el("span", { class: "title", text: p.title }),
    el("span", { class: "muted", text: ` ${p.year === null || p.year === undefined ? "" : p.year}${p.genres ? ` \u00b7 ${String(p.genres).split("|").join(", ")}` : ""}` }),
    p.rationale ? el("p", { class: "rationale written", text: p.rationale }) : null,
    el("button", { type: "button", class: "similar", "aria-label": `Similar to ${p.title}`,
      onclick: () => { selectTab("recommend"); showSimilar({ id: p.id, title: p.title }); } }, "Similar")));
  li.append(el("ol", { class: "chat-picks" }, picks));
  (turn.notes || []).forEach((n) => li.append(el("p", { class: "muted", text: n })));
  return li;
}

function showSession(s) {
  state.session = s.id;
  $("chat-send").disabled = false;
  $("chat-turns").replaceChildren(...(s.turns || []).map(turnCard));
  $("chat-wishes").replaceChildren(...chips(stateWishes(s), "none yet"));
  setStatus("chat-status", `Session ${s.id}${s.user_id ? ` for ${s.user_id}` : ""}: ${(s.turns || []).length} turns.`);
}

async function newSession(event) {
  event.preventDefault();
  const user = $("chat-user").value.trim();
  recordUser(user);
  try {
    const started = await apiJson("/v1/sessions", { method: "POST", json: user ? { user_id: user } : {} });
    showSession(await apiJson(`/v1/sessions/${encodeURIComponent(started.id)}`));
    $("chat-message").focus();
    refreshSessions();
  } catch (err) {
    setStatus("chat-status", `Failed: ${err.message}`, true);
  }
}

async function sendMessage(event) {
  event.preventDefault();
  const message = $("chat-message").value.trim();
  if (!message || !state.session) return;
  const sid = encodeURIComponent(state.session);
  $("chat-send").disabled = true;
  setStatus("chat-status", "Thinking\u2026");
  try {
    await apiJson(`/v1/sessions/${sid}/messages`, { method: "POST", json: { message } });
    showSession(await apiJson(`/v1/sessions/${sid}`));
    $("chat-message").value = "";
  } catch (err) {
    setStatus("chat-status", `Failed: ${err.message}`, true);
  } finally {
    $("chat-send").disabled = !state.session;
  }
}

async function refreshSessions() {
  const select = $("chat-sessions");
  try {
    const page = await apiJson("/v1/sessions?limit=200");
    const rows = (page.items || []).slice().sort((a, b) => b.updated - a.updated);
    rows.forEach((r) => recordUser(r.user_id));
    select.replaceChildren(...rows.map((r) => el("option", { value: r.id,
      text: `${r.id}${r.user_id ? ` (${r.user_id})` : ""}, ${new Date(r.updated * 1000).toLocaleString()}` })));
    if (!rows.length) select.append(el("option", { value: "", text: "no sessions yet" }));
  } catch (err) {
    setStatus("chat-status", `Could not list sessions: ${err.message}`, true);
  }
}

async function resumeSession(event) {
  event.preventDefault();
  const id = $("chat-sessions").value;
  if (!id) return;
  try {
    showSession(await apiJson(`/v1/sessions/${encodeURIComponent(id)}`));
  } catch (err) {
    setStatus("chat-status", `Failed: ${err.message}`, true);
  }
}

// -- boot ----------------------------------------------------------------------------------

function start() {
  const current = document.querySelector("[role=tab][aria-selected=true]");
  selectTab(current ? current.id.replace("tab-", "") : "recommend");
  if (!$("rec-user").value && !$("rec-query").value) $("rec-user").focus();
}

async function boot() {
  const tabs = Array.from(document.querySelectorAll("[role=tab]"));
  for (const tab of tabs) {
    tab.addEventListener("click", () => {
      if (state.keyRequired && !sessionStorage.getItem(KEY_STORE)) return;
      selectTab(tab.id.replace("tab-", ""));
    });
    // The arrow keys move between tabs (the ARIA tabs pattern); Tab leaves the tab list.
    tab.addEventListener("keydown", (e) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (!step) return;
      e.preventDefault();
      const next = tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length];
      next.focus();
      next.click();
    });
  }
  $("key-form").addEventListener("submit", useKey);
  $("forget-key").addEventListener("click", forgetKey);
  $("rec-form").addEventListener("submit", recommend);
  $("chat-start").addEventListener("submit", newSession);
  $("chat-form").addEventListener("submit", sendMessage);
  $("chat-resume").addEventListener("submit", resumeSession);
  $("chat-refresh").addEventListener("click", refreshSessions);
  $("status-refresh").addEventListener("click", refreshStatus);
  $("exp-form").addEventListener("submit", (e) => { e.preventDefault(); showExperiment($("exp-name").value); });
  try {
    const settings = await (await fetch("/page.json")).json();
    state.keyRequired = Boolean(settings.api_key_required);
    state.keyHeader = settings.api_key_header || state.keyHeader;
  } catch (err) {
    setStatus("rec-status", `Could not read /page.json: ${err.message}`, true);
  }
  if (state.keyRequired && !sessionStorage.getItem(KEY_STORE)) {
    showKeyPanel("");
  } else {
    $("forget-key").hidden = !state.keyRequired;
    start();
  }
  // Booted: a view or the key form is showing (browser tests wait for this).
  document.body.dataset.booted = "1";
}

document.addEventListener("DOMContentLoaded", boot);
