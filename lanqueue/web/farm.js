/* The farm view: one card per printer of every LAN queue this node shares, and each queue's
 * timeline. The node gathers the other nodes' summaries over the signed peer protocol
 * (/lanqueue/farm); this module only shows them and sends actions (/lanqueue/farm/action), which
 * the node carries to the printer's node. Forecasts are computed by the node (timeline.py), not
 * here, so the page and any other client agree.
 */
import { $, act, api, clock, duration, esc, refresh, session, view } from "./core.js";
import { materialChip, paintSwatches } from "./materials.js";

const ACTION_TEXT = {
  continue: "Bed cleared – continue",
  pause: "Pause",
  resume: "Resume",
  cancel: "Cancel",
  start: "Start managing",
  stop: "Stop managing",
};
const CONFIRM = new Set(["cancel"]);  // two clicks: a cancelled print cannot be brought back

export async function loadFarm() {
  try {
    view.farm = await api("GET", "/lanqueue/farm", { quiet: true });
  } catch (err) {
    if (err.status === 404) return;  // a node without the farm view
    view.farm = null;
  }
  renderFarm();
  renderTimeline();
}

function temps(t) {
  const names = Object.keys(t || {}).sort((a, b) => (a === "bed") - (b === "bed") || a.localeCompare(b));
  return names.map((n) => {
    const [actual, target] = t[n] || [];
    const label = n === "bed" ? "Bed" : n.replace(/^tool/, "T");
    const want = target ? `→${Number(target).toFixed(0)}` : "";
    return `<span data-heater="${esc(n)}">${esc(label)} ${actual == null ? "–" : Number(actual).toFixed(0)}°${want}</span>`;
  }).join(" ");
}

function stateLine(c) {
  if (c.farm_state === "connecting") return '<span class="badge">connecting…</span>';
  if (c.farm_state === "off") {
    return `<span class="badge bad">off</span> <span class="muted farm-since">since ${esc(c.since ? clock(c.since) : "?")}</span>`;
  }
  return `<span class="badge" data-state="${esc(c.state)}">${esc(c.state)}</span>${c.managing ? ' <span class="badge ok">managed</span>' : ""}`;
}

function cardHtml(c) {
  const job = c.job ? `${esc(c.job.name)}${c.job.queue ? ` <span class="muted">(${esc(c.job.queue)})</span>` : ""}` : "";
  const pct = c.progress == null ? null : Math.max(0, Math.min(100, c.progress));
  const times = [];
  if (pct != null) times.push(`${pct.toFixed(0)} %`);
  if (c.left_s != null) times.push(`${duration(c.left_s)} left`);
  // named by content digest on the printer's node; this node relays it (the page loads only from here)
  const thumbName = c.thumbnail ? String(c.thumbnail).split("/").pop() : "";
  const thumb = thumbName && c.farm_state === "on"
    ? `<img class="farm-thumb" alt="" src="/lanqueue/farm/thumbnail/${encodeURIComponent(c.node_id)}/${encodeURIComponent(thumbName)}?apikey=${encodeURIComponent(session.apiKey || "")}">` : "";
  const backend = c.backend ? [c.backend.kind, c.backend.model].filter(Boolean).join(" · ") : "";
  const buttons = (c.actions || []).map((a) => `<button type="button" data-farm-action="${esc(a)}" data-node="${esc(c.node_id)}"
      class="small${a === "continue" ? " primary" : a === "cancel" ? " danger" : ""}">${esc(ACTION_TEXT[a] || a)}</button>`).join("");
  return `<article class="farm-printer${c.stale ? " stale" : ""}" data-node="${esc(c.node_id)}" data-farm-state="${esc(c.farm_state)}">
    <header><strong>${esc(c.name)}</strong>${c.own ? ' <span class="muted">(this node)</span>' : ""}<span class="farm-state">${stateLine(c)}</span></header>
    ${backend ? `<div class="muted farm-backend">${esc(backend)}</div>` : ""}
    <div class="farm-body">${thumb}<div>
      <div class="farm-job">${job || '<span class="muted">no job</span>'}</div>
      ${c.file ? `<div class="muted file-name">${esc(c.file)}</div>` : ""}
      ${pct != null ? `<progress max="100" value="${pct}"></progress>` : ""}
      <div class="muted">${esc(times.join(" · "))}</div>
      <div class="farm-temps muted">${temps(c.temperatures)}</div>
      ${(c.materials || []).some(Boolean) ? `<div class="farm-materials">${c.materials.map((m) => (m ? materialChip(m) : "")).join(" ")}</div>` : ""}
    </div></div>
    ${c.needs && c.farm_state === "on" ? `<div class="farm-needs">${esc(c.needs)}</div>` : ""}
    ${buttons ? `<div class="buttons">${buttons}</div>` : ""}
  </article>`;
}

export function renderFarm() {
  const cards = (view.farm && view.farm.cards) || [];
  const el = $("farm");
  const html = cards.length > 1 || (cards.length && cards[0].queues && cards[0].queues.length)
    ? cards.map(cardHtml).join("") : "";
  $("farm-card").hidden = !html;  // a node sharing no LAN queue has only its own printer card
  if (el.dataset.html !== html) { el.innerHTML = html; el.dataset.html = html; paintSwatches(el); }
  const own = cards.find((c) => c.own);
  if (own && own.backend) {
    const { kind, where, model } = own.backend;
    const text = [kind, where !== kind ? where : "", model].filter(Boolean).join(" · ");
    if ($("printer-backend").textContent !== text) $("printer-backend").textContent = text;
  }
}

export function renderTimeline() {
  const lines = ((view.farm && view.farm.timelines) || []).filter((t) => t.jobs.length);
  const html = lines.map((t) => `<h3>${esc(t.queue === "local" ? "Local queue" : `LAN queue: ${t.queue}`)}</h3>
    <ol class="timeline" data-queue="${esc(t.queue)}">${t.jobs.map((j) => `<li data-job="${esc(j.job_id)}">
      <span class="tl-name">${esc(j.name)}</span>
      <span class="tl-printer">${j.printer ? esc(j.printer) : '<span class="muted">no printer can take it now</span>'}</span>
      <span class="tl-when">${j.done_at != null ? `done ${esc(clock(j.done_at))}` : j.printer ? '<span class="muted">done: unknown</span>' : ""}</span>
    </li>`).join("")}</ol>`).join("");
  $("timeline-card").hidden = !html;
  const el = $("timeline");
  if (el.dataset.html !== html) { el.innerHTML = html; el.dataset.html = html; }
}

$("farm").addEventListener("click", async (e) => {
  const button = e.target.closest("button[data-farm-action]");
  if (!button) return;
  const action = button.dataset.farmAction;
  if (CONFIRM.has(action) && !button.classList.contains("confirm")) {
    button.classList.add("confirm");
    button.textContent = "Really cancel?";
    setTimeout(() => { button.classList.remove("confirm"); button.textContent = ACTION_TEXT[action]; }, 4000);
    return;
  }
  button.disabled = true;
  const name = button.closest("article").querySelector("strong").textContent;
  await act(ACTION_TEXT[action], () => api("POST", "/lanqueue/farm/action", { form: { node: button.dataset.node, action } }),
    { success: `${ACTION_TEXT[action]}: ${name}` });
  button.disabled = false;
  refresh("farm", "state", "printer");
});
$("farm").addEventListener("error", (e) => { if (e.target.matches("img.farm-thumb")) e.target.remove(); }, true);
