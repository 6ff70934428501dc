// "Awaiting your approval": the transfers the signed-in user may decide (GET /api/approvals,
// those with can_decide), each linking to its page, where Approve and Reject are. Refreshed
// when the list is shown, when a status event arrives (app.js's "ff:event") and every few
// seconds while the list is on screen. Uses app.js's api(), el(), when() and $().
"use strict";

const APPROVALS_EVERY_MS = 5000;
let approvalsTimer = null;

async function loadApprovals() {
  const { data } = await api("/api/approvals");
  const mine = data.filter((a) => a.can_decide);
  $("#awaiting tbody").replaceChildren(...mine.map((a) => el("tr", { "data-id": a.transfer_id },
    el("td", {}, el("a", { href: `#/transfers/${a.transfer_id}`, class: "mono",
                           text: a.transfer_id })),
    el("td", { class: "requester", text: a.requester }),
    el("td", { class: "group", text: a.group }),
    el("td", { class: "deadline", text: when(a.deadline) }))));
  $("#awaiting").hidden = mine.length === 0;
}

// Several events at once (a burst of status changes) make one request.
function refreshApprovals() {
  if ($("#list").hidden) return;
  clearTimeout(approvalsTimer);
  approvalsTimer = setTimeout(() => { loadApprovals().catch(() => {}); }, 150);
}

window.addEventListener("DOMContentLoaded", () => {
  document.addEventListener("ff:list-shown", refreshApprovals);
  document.addEventListener("ff:event", (e) => {
    if (e.detail.type === "status") refreshApprovals();
  });
  setInterval(refreshApprovals, APPROVALS_EVERY_MS);
});
