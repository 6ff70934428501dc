// The dashboard's chat panel: POST /api/chat, the proposed plan with a Confirm button,
// then the started transfer's live progress from its event stream. Uses app.js's
// api(), readEvents via follow(), el(), bar() and tickets(). Everything the server
// returns (object names above all) is shown with textContent: it is data, never markup.
"use strict";

const CHAT_KEY = "fileferry.chat-session";
let chatStream = null;

function chatSession() {
  let id = sessionStorage.getItem(CHAT_KEY);
  if (!id) {
    id = `web-${crypto.randomUUID()}`;
    sessionStorage.setItem(CHAT_KEY, id);
  }
  return id;
}

function say(who, text) {
  const log = $("#chat-log");
  log.append(el("li", { class: who, text }));
  log.scrollTop = log.scrollHeight;
}

function showPlan(plan) {
  const box = $("#chat-plan");
  if (!plan) { box.hidden = true; return; }
  $("#chat-plan-id").textContent = plan.plan_id;
  $("#chat-plan-summary").textContent =
    `${plan.count} file(s), ${plan.total_size} (${plan.total_bytes} bytes) to ${plan.destination}`;
  $("#chat-plan-files tbody").replaceChildren(...plan.files.map((f) => el("tr", {},
    el("td", { class: "mono", text: f.source }),
    el("td", { class: "mono", text: f.target }),
    el("td", { text: size(f.size) }))));
  $("#chat-plan-more").textContent =
    plan.files_not_shown ? `… and ${plan.files_not_shown} more file(s)` : "";
  const policy = [`Policy: ${plan.policy}`];
  if (plan.policy_warning) policy.push(`Warning: ${plan.policy_warning}`);
  if (plan.approval_required_from) policy.push(`Needs approval from ${plan.approval_required_from}`);
  $("#chat-plan-policy").textContent = policy.join(". ");
  const button = $("#chat-confirm");
  button.dataset.plan = plan.plan_id;
  button.disabled = false;
  box.hidden = false;
}

function showTransfer(t) {
  $("#chat-transfer").hidden = false;
  const link = $("#chat-transfer-link");
  link.textContent = t.transfer_id;
  link.href = `#/transfers/${t.transfer_id}`;
  $("#chat-transfer-status").textContent = t.status;
  $("#chat-transfer-status").className = `status status-${t.status}`;
  $("#chat-progress").replaceChildren(bar(t));
  $("#chat-transfer-tickets").replaceChildren(tickets(t));
}

function followTransfer(started) {
  if (chatStream) chatStream.abort();
  let current = { bytes_done: 0, bytes_total: 0, tickets: null, ...started };
  showTransfer(current);
  const path = `/api/transfers/${encodeURIComponent(started.transfer_id)}/events`;
  chatStream = follow(path, (type, ev) => {
    current = { ...current, ...ev.transfer };
    showTransfer(current);
    if (ev.final) say("agent", `Transfer ${current.transfer_id}: ${current.status}`);
  }, () => { chatStream = null; });
}

async function sendChat(body) {
  $("#chat-error").textContent = "";
  try {
    const reply = await api("/api/chat", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ session_id: chatSession(), ...body }),
    });
    say("agent", reply.text);
    if (reply.plan) showPlan(reply.plan);
    else if (body.confirm || reply.transfer) showPlan(null);
    if (reply.transfer?.events) followTransfer(reply.transfer);
    return reply;
  } catch (err) {
    $("#chat-error").textContent = err.message;
    return null;
  }
}

window.addEventListener("DOMContentLoaded", () => {
  $("#chat-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("#chat-input");
    const message = input.value.trim();
    if (!message) return;
    input.value = "";
    say("you", message);
    await sendChat({ message });
  });
  $("#chat-confirm").addEventListener("click", async () => {
    const button = $("#chat-confirm");
    button.disabled = true;  // one click, one confirmation
    say("you", `Confirm plan ${button.dataset.plan}`);
    await sendChat({ confirm: button.dataset.plan });
  });
});
