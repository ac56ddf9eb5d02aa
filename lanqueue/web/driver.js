/* The queue manager's card (start/stop managing) and the "needs action" list: what a person
 * must do now (clear the bed, retry, reconnect, adopt the jobs of a node that is gone).
 */
import { $, act, api, cp, esc, refresh, view } from "./core.js";
import { renderQueues } from "./queues.js";

export function renderDriver() {
  const s = view.state;
  if (!s) return;
  const card = $("driver");
  card.dataset.type = s.statusType;
  card.dataset.active = String(s.active);
  $("status-text").textContent = s.status;
  const button = $("toggle-active");
  button.disabled = false;
  button.textContent = s.active ? "Stop managing" : "Start managing";
  button.className = s.active ? "" : "primary";
  button.dataset.active = String(s.active);
}

$("toggle-active").addEventListener("click", async () => {
  const button = $("toggle-active");
  const activate = button.dataset.active !== "true";
  button.disabled = true;
  const state = await act(activate ? "Start managing" : "Stop managing",
    () => cp("set_active", { active: activate }));
  if (state) { view.state = state; renderDriver(); renderQueues(); renderActions(); }
  button.disabled = false;
});

export const GONE = new Set(["GONE", "OFFLINE", "LOST", "DEAD", "UNREACHABLE"]);

/** Offline nodes whose LAN jobs wait for them: their homes, or holders of leases. */
function gonePeers() {
  const out = new Map();
  const add = (id, name, queue, n) => {
    const entry = out.get(id) || { id, name: name || id, queues: new Set(), jobs: 0 };
    entry.queues.add(queue);
    entry.jobs += n;
    out.set(id, entry);
  };
  for (const q of view.state?.queues || []) {
    if (q.link) continue; // a queue kept in etcd has no home node to adopt from: its note says why
    for (const j of q.jobs) {
      if (j.home && j.home_online === false && j.remaining > 0) add(j.home, j.home_name, q.name, 1);
    }
    if (!q.peers || Array.isArray(q.peers)) continue;
    for (const [id, p] of Object.entries(q.peers)) {
      const gone = p.gone === true || p.online === false || GONE.has(String(p.status || "").toUpperCase());
      const held = (p.acquired || []).length;
      if (gone && held) add(id, p.name, q.name, held);
    }
  }
  return Array.from(out.values());
}

export function renderActions() {
  const s = view.state;
  if (!s) return;
  const items = [];
  if (s.statusType === "NEEDS_ACTION") {
    items.push(`<li data-kind="continue"><span>${esc(s.status)}</span><span class="buttons">
      <button type="button" class="primary" data-action="continue">Bed cleared – continue</button></span></li>`);
  }
  if (s.statusType === "ERROR") {
    items.push(`<li data-kind="error"><span>${esc(s.status)}</span><span class="buttons">
      <button type="button" class="primary" data-action="retry">Retry</button></span></li>`);
  }
  if (view.job && view.job.state === "Error") {
    items.push(`<li data-kind="printer"><span>Printer error: ${esc(view.job.error || "unknown")}</span><span class="buttons">
      <button type="button" data-action="reconnect">Reconnect</button></span></li>`);
  }
  for (const p of gonePeers()) {
    items.push(`<li data-kind="gone"><span>${esc(p.name)} is offline; ${p.jobs} job(s) of ${esc(Array.from(p.queues).join(", "))} wait for it.</span>
      <span class="buttons"><button type="button" data-action="adopt" data-node="${esc(p.id)}">Adopt its jobs</button></span></li>`);
  }
  let conflicted = 0;
  for (const q of s.queues) for (const j of q.jobs) if (Array.isArray(j.conflicts) && j.conflicts.length) conflicted++;
  if (conflicted) items.push(`<li data-kind="conflicts"><span>${conflicted} LAN job(s) have conflicting edits; see the marked jobs below.</span></li>`);
  const html = items.join("");
  const list = $("action-list");
  if (list.dataset.html !== html) { list.innerHTML = html; list.dataset.html = html; }
  $("needs-action").hidden = items.length === 0;
}

$("action-list").addEventListener("click", async (e) => {
  const button = e.target.closest("button[data-action]");
  if (!button) return;
  button.disabled = true;
  const a = button.dataset.action;
  if (a === "continue") await act("Continue", () => cp("runner/continue", {}), { success: "Continuing" });
  else if (a === "retry") await act("Retry", () => cp("set_active", { active: true }));
  else if (a === "reconnect") await act("Reconnect", () => api("POST", "/api/connection", { json: { command: "connect" } }));
  else if (a === "adopt") {
    await act("Adopt", async () => {
      return await api("POST", "/lanqueue/lan/adopt", { form: { node: button.dataset.node } });
    }, { success: "Jobs adopted" });
  }
  button.disabled = false;
  refresh("state", "printer");
});
