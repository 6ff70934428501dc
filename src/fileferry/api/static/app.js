// The FileFerry dashboard: plain JavaScript over the REST API and its event streams.
// The token comes from a #token=… fragment (never sent to the server) or the sign-in
// form and is kept in sessionStorage; every call sends it as a bearer token. Event
// streams are read with fetch (EventSource cannot send an Authorization header).
// With SSO on the server (/auth/session says so) there is no token here: the session
// is an HttpOnly cookie set by /auth/callback, and every state-changing call repeats
// the session's CSRF token in X-CSRF-Token.
"use strict";

const KEY = "fileferry.token";
const $ = (sel) => document.querySelector(sel);
const transfers = new Map();
let listStream = null;
let detailStream = null;
const sso = { on: false, user: null, groups: [], csrf: null, operator: false };
// Set once the user signs out: the page is on its way to /logout, and a poll answered
// 401 (the cookie is gone) must not send it to the provider's sign-in page instead.
let leaving = false;

function token() { return sessionStorage.getItem(KEY); }

function signedIn() { return !leaving && (sso.on ? Boolean(sso.user) : Boolean(token())); }

function authHeaders(method) {
  if (!sso.on) return { Authorization: `Bearer ${token()}` };
  return method && method !== "GET" ? { "X-CSRF-Token": sso.csrf } : {};
}

function toLogin() {
  if (leaving) return;
  location.assign(`/login?next=${encodeURIComponent(`/${location.hash}`)}`);
}

// Once per page: is SSO on, and who is signed in (the cookie itself is unreadable here).
async function loadSession() {
  const res = await fetch("/auth/session", { credentials: "same-origin" });
  const body = res.ok ? await res.json() : { sso: false };
  Object.assign(sso, { on: Boolean(body.sso), user: body.user || null,
                       groups: body.groups || [], csrf: body.csrf || null,
                       operator: Boolean(body.operator) });
}

function takeTokenFromFragment() {
  const match = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (match) {
    sessionStorage.setItem(KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + "#/");
  }
}

async function api(path, options = {}) {
  const headers = { ...authHeaders(options.method), ...(options.headers || {}) };
  const res = await fetch(path, { ...options, headers, credentials: "same-origin" });
  if (res.status === 401) {
    if (sso.on) toLogin(); else signOut("The token was not accepted.");
    throw new Error("401");
  }
  const body = res.status === 204 ? null : await res.json();
  if (!res.ok) {
    const err = new Error(body?.error?.message || res.statusText);
    err.fields = body?.error?.fields || [];
    throw err;
  }
  return body;
}

// Server-Sent Events over fetch: calls onEvent(type, data) per event until the stream ends.
async function readEvents(path, onEvent, signal) {
  const res = await fetch(path, { headers: authHeaders("GET"), signal,
                                  credentials: "same-origin" });
  if (!res.ok) throw new Error(`${path}: ${res.status}`);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) type = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trim());
      }
      if (data.length) onEvent(type, JSON.parse(data.join("\n")));
    }
  }
}

function follow(path, onEvent, onEnd) {
  const controller = new AbortController();
  readEvents(path, onEvent, controller.signal)
    .catch(() => {})
    .finally(() => { if (!controller.signal.aborted && onEnd) onEnd(); });
  return controller;
}

// --- formatting

const FINAL = new Set(["SUCCEEDED", "FAILED", "REFUSED", "CANCELLED"]);

function size(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

function when(ts) { return new Date(ts * 1000).toLocaleString(); }

function duration(t) {
  const end = FINAL.has(t.status) ? t.updated_at : Date.now() / 1000;
  const s = Math.max(0, Math.round(end - t.created_at));
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

function percent(t) {
  if (t.status === "SUCCEEDED") return 100;
  if (!t.bytes_total) return 0;
  return Math.min(100, Math.floor((100 * t.bytes_done) / t.bytes_total));
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function bar(t) {
  const pct = percent(t);
  const state = t.status === "SUCCEEDED" ? " done" : FINAL.has(t.status) ? " failed" : "";
  const fill = el("div", { class: "fill" });
  fill.style.width = `${pct}%`;  // CSSOM, allowed by the page's CSP
  const node = el("span", {
    class: `bar${state}`, role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
    "aria-valuenow": String(pct), "data-bytes": String(t.bytes_done),
  }, fill);
  const label = el("span", { class: "pct", text: `${pct}%` });
  const wrap = el("span", { class: "progress" }, node, label);
  wrap.title = `${size(t.bytes_done)} of ${size(t.bytes_total)}`;
  return wrap;
}

function tickets(t) {
  const span = el("span", { class: "tickets" });
  for (const [kind, number] of Object.entries(t.tickets || {})) {
    const link = t.ticket_links?.[kind];
    const node = link ? el("a", { href: link, target: "_blank", rel: "noopener", text: number })
      : el("span", { text: number });
    node.title = `${kind} ticket`;
    node.classList.add(`ticket-${kind}`);
    span.append(node, " ");
  }
  return span;
}

// --- the list

function row(t) {
  const link = el("a", { href: `#/transfers/${t.transfer_id}`, class: "mono",
                         text: t.transfer_id });
  const tr = el("tr", { "data-id": t.transfer_id },
    el("td", {}, link),
    el("td", { class: `status status-${t.status}`, text: t.status }),
    el("td", {}, bar(t)),
    el("td", { class: "requester", text: t.requester }),
    el("td", { class: "destination mono", text: t.destination }),
    el("td", {}, tickets(t)),
    el("td", { class: "started", text: when(t.created_at) }),
    el("td", { class: "duration", text: duration(t) }));
  return tr;
}

function renderList() {
  const body = $("#transfers tbody");
  const sorted = [...transfers.values()].sort((a, b) => b.created_at - a.created_at);
  body.replaceChildren(...sorted.map(row));
  $("#empty").hidden = sorted.length > 0;
}

// With SSO the list is the user's own transfers (an operator's: everyone's). The event
// stream also carries transfers waiting for the user's approval group: approvals.js
// shows those under "Awaiting your approval".
function listed(t) {
  return !sso.on || sso.operator || t.requester === sso.user || transfers.has(t.transfer_id);
}

function update(t) {
  if (!listed(t)) return;
  const known = transfers.get(t.transfer_id);
  const merged = { ...(known || {}), ...t };
  transfers.set(t.transfer_id, merged);
  const existing = document.querySelector(`#transfers tr[data-id="${t.transfer_id}"]`);
  if (existing) existing.replaceWith(row(merged));
  else renderList();
}

async function loadList() {
  let cursor = null;
  transfers.clear();
  do {
    const page = await api(`/api/transfers?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    for (const t of page.data) transfers.set(t.transfer_id, t);
    cursor = page.next_cursor;
  } while (cursor && transfers.size < 1000);
  renderList();
}

function followAll() {
  if (listStream) return;
  $("#live").textContent = "live";
  listStream = follow("/api/events", (type, ev) => {
    update(ev.transfer);
    document.dispatchEvent(new CustomEvent("ff:event", { detail: { type, ev } }));
  }, () => {
    listStream = null;
    $("#live").textContent = "reconnecting…";
    setTimeout(() => { if (signedIn()) { loadList().catch(() => {}); followAll(); } }, 2000);
  });
}

async function loadDestinations() {
  const select = $("#destination");
  const { data } = await api("/api/destinations");
  select.replaceChildren(...data.map((d) => el("option", {
    value: d.name, text: `${d.name} (${d.scheme}://${d.host}${d.root})` })));
}

async function startTransfer(event) {
  event.preventDefault();
  $("#form-error").textContent = "";
  $("#form-ok").textContent = "";
  for (const node of document.querySelectorAll(".invalid")) node.classList.remove("invalid");
  const sources = $("#sources").value.split("\n").map((s) => s.trim()).filter(Boolean);
  const body = { sources, destination: `${$("#destination").value}:${$("#path").value.trim()}` };
  const requester = $("#requester").value.trim();
  if (requester && !sso.on) body.options = { requester };
  try {
    const t = await api("/api/transfers", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    update(t);
    $("#form-ok").textContent = `Started ${t.transfer_id}.`;
  } catch (err) {
    $("#form-error").textContent = err.message;
    for (const f of err.fields || []) {
      const id = f.field.startsWith("sources") ? "#sources"
        : f.field.startsWith("destination") ? "#path" : null;
      if (id) $(id).classList.add("invalid");
    }
  }
}

// --- the detail view

function renderDetail(t) {
  $("#d-id").textContent = t.transfer_id;
  $("#d-progress").replaceChildren(bar(t));
  const facts = [["Status", t.status], ["Requester", t.requester],
    ["Destination", t.destination], ["Sources", t.sources.join(", ")],
    ["Started", when(t.created_at)], ["Duration", duration(t)],
    ["Files", `${t.files_done} of ${t.files_total}`],
    ["Bytes", `${size(t.bytes_done)} of ${size(t.bytes_total)}`]];
  const dl = $("#d-summary");
  dl.replaceChildren();
  for (const [k, v] of facts) dl.append(el("dt", { text: k }), el("dd", { text: v }));
  dl.append(el("dt", { text: "Tickets" }), el("dd", {}, tickets(t)));
  $("#d-error").textContent = t.error ? `${t.error.type}: ${t.error.message}` : "";
  // an approver reads someone else's transfer but only its requester or an operator cancels
  const mayCancel = !sso.on || sso.operator || t.requester === sso.user;
  $("#d-cancel").hidden = FINAL.has(t.status) || t.cancel_requested || !mayCancel;
  if (t.status !== "PENDING_APPROVAL") $("#d-approval").hidden = true;
  if (t.files) {
    $("#files tbody").replaceChildren(...t.files.map((f) => el("tr", { "data-source": f.source },
      el("td", { class: "mono", text: f.destination }),
      el("td", { text: size(f.size) }),
      el("td", {}, el("code", { class: "sha256", text: f.sha256 || "–" })),
      el("td", { class: "verified-by", text: f.verified_by || "–" }),
      el("td", { class: "retries", text: String(f.retries) }),
      el("td", { class: `status status-${f.status}`, text: f.status }))));
  }
  if (t.history) {
    $("#history tbody").replaceChildren(...t.history.map((e) => el("tr", {},
      el("td", { text: new Date(e.at * 1000).toLocaleTimeString() }),
      el("td", { class: "mono", text: e.path || e.state }),
      el("td", { text: e.event }),
      el("td", { text: e.error ? `${e.error}: ${e.cause || ""}` : "" }))));
  }
}

// A transfer waiting for approval: who asked, which group decides, and the buttons
// for someone in that group (the server checks again: the requester gets a 403).
async function showApproval(t) {
  const box = $("#d-approval");
  if (t.status !== "PENDING_APPROVAL") { box.hidden = true; return; }
  const a = await api(`/api/transfers/${encodeURIComponent(t.transfer_id)}/approval`);
  $("#d-approval-text").textContent = `Waiting for approval by group ${a.group} (asked by `
    + `${a.requester}; rejected automatically at ${when(a.deadline)}).`
    + (a.can_decide ? "" : ` ${a.why_not}.`);
  $("#d-approval-form").hidden = !a.can_decide;
  box.hidden = false;
}

async function decide(verdict) {
  const id = $("#d-id").textContent;
  const reason = $("#d-reason").value.trim();
  try {
    const t = await api(`/api/transfers/${encodeURIComponent(id)}/${verdict}`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(reason ? { reason } : {}),
    });
    $("#d-approval").hidden = true;
    $("#d-decided").textContent = `${verdict === "approve" ? "Approved" : "Rejected"} by `
      + `${sso.user || "you"}.`;
    await showDetail(t.transfer_id);
  } catch (err) { $("#d-error").textContent = err.message; }
}

async function showDetail(id) {
  if (detailStream) { detailStream.abort(); detailStream = null; }
  const t = await api(`/api/transfers/${encodeURIComponent(id)}`);
  renderDetail(t);
  await showApproval(t).catch((err) => { $("#d-error").textContent = err.message; });
  if (FINAL.has(t.status)) return;
  let current = t;
  detailStream = follow(`/api/transfers/${encodeURIComponent(id)}/events`, (type, ev) => {
    current = { ...current, ...ev.transfer, files: current.files, history: current.history };
    renderDetail(current);
    if (type === "file" || ev.final) {
      api(`/api/transfers/${encodeURIComponent(id)}`).then((full) => {
        current = full;
        renderDetail(full);
      }).catch(() => {});
    }
  });
}

// --- navigation

function signOut(message) {
  if (sso.on) {
    leaving = true;
    if (listStream) { listStream.abort(); listStream = null; }
    if (detailStream) { detailStream.abort(); detailStream = null; }
    location.assign("/logout");
    return;
  }
  sessionStorage.removeItem(KEY);
  if (listStream) { listStream.abort(); listStream = null; }
  route();
  $("#login-error").textContent = message || "";
}

async function route() {
  takeTokenFromFragment();
  const inside = signedIn();
  if (sso.on && !inside && location.hash !== "#/signed-out") { toLogin(); return; }
  $("#login").hidden = inside || sso.on;
  $("#sso-login").hidden = inside || !sso.on;
  $("#logout").hidden = !inside;
  $("#whoami").textContent = sso.on && sso.user ? sso.user : "";
  const detail = location.hash.match(/^#\/transfers\/([A-Za-z0-9._-]+)$/);
  $("#list").hidden = !inside || Boolean(detail);
  $("#detail").hidden = !inside || !detail;
  if (!inside) return;
  if (detail) {
    await showDetail(detail[1]).catch((err) => { $("#d-error").textContent = err.message; });
    return;
  }
  if (detailStream) { detailStream.abort(); detailStream = null; }
  document.dispatchEvent(new CustomEvent("ff:list-shown"));
  await Promise.all([loadList(), loadDestinations()]).catch(() => {});
  followAll();
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", async () => {
  await loadSession().catch(() => {});
  if (sso.on) {
    $("#logout").textContent = "Sign out";
    $("#requester-field").hidden = true;  // the requester is whoever signed in
    if (!sso.operator) $("#transfers-title").textContent = "Your transfers";
  }
  $("#d-approve").addEventListener("click", () => decide("approve"));
  $("#d-reject").addEventListener("click", () => decide("reject"));
  $("#login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, $("#token").value.trim());
    $("#token").value = "";
    route();
  });
  $("#logout").addEventListener("click", () => signOut());
  $("#new-transfer").addEventListener("submit", startTransfer);
  $("#d-cancel").addEventListener("click", async () => {
    const id = $("#d-id").textContent;
    try { await api(`/api/transfers/${id}/cancel`, { method: "POST" }); }
    catch (err) { $("#d-error").textContent = err.message; }
  });
  setInterval(() => {
    for (const node of document.querySelectorAll("#transfers tr[data-id]")) {
      const t = transfers.get(node.dataset.id);
      if (t && !FINAL.has(t.status)) node.querySelector(".duration").textContent = duration(t);
    }
  }, 1000);
  route();
});
