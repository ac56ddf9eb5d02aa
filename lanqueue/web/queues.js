/* The queues: one section per queue, rows rebuilt only when their job changed (a big queue stays
 * cheap to update), in-place edits, delete with confirmation, drag and drop to reorder or move.
 */
import { $, act, cp, esc, keyOf, refresh, view } from "./core.js";
import { materialChip, paintSwatches, profileMismatch, setNeeds } from "./materials.js";
import { peerList } from "./peers.js";

const jobsByKey = new Map();   // keyOf(queue, id) -> job object of the last state
const rowCache = new Map();    // same key -> {sig, el}

let dragKey = null;

/** A node's name from its id, as far as this page knows it. */
function nodeName(id) {
  if (view.nodePeers && id === view.nodePeers.node_id) return "this node";
  for (const q of view.state?.queues || []) {
    if (q.peers && !Array.isArray(q.peers) && q.peers[id] && q.peers[id].name) return q.peers[id].name;
  }
  const p = peerList(view.nodePeers).find((x) => x.node_id === id);
  return (p && p.name) || String(id).slice(0, 8);
}

const CONFLICT_TEXT = {
  stale_token: "a print was reported under a lease that had expired",
  over_completion: "a print was reported when nothing was left to count",
  deleted: "a print was reported after the job was deleted",
  diverged: "its old home accepted work after another node adopted the job",
};

function conflictText(c) {
  if (typeof c === "string") return c;
  if (!c || typeof c !== "object") return String(c);
  const what = CONFLICT_TEXT[c.kind] || c.kind || "conflict";
  return `${what}${c.holder ? ` (by ${nodeName(c.holder)})` : ""}${c.detail ? `: ${c.detail}` : ""}`;
}

/** A set's material needs: chips per tool, and a warning for each one not loaded now. */
function setMaterials(s) {
  if (!s.materials || !s.materials.some((m) => m)) return "";
  const chips = s.materials.map((m, tool) => (m ? `<span class="mat-need"><span class="muted">T${tool}</span>${materialChip(m)}</span>` : "")).join("");
  const needs = s.remaining > 0 ? setNeeds(s) : [];
  const warn = needs.length ? `<span class="badge warn mismatch">needs ${esc(needs.map((n) => `${n.wanted} on tool ${n.tool}`).join(", "))}</span>` : "";
  return `<span class="mat-needs">${chips}</span>${warn}`;
}

function jobRow(job, queue, activeSet, queueNames) {
  const queueIsLan = queue !== "local";  // a LAN job's copies per set are fixed once shared
  const done = job.remaining <= 0;
  const runsDone = job.count - job.remaining;
  const isActive = job.sets.some((s) => activeSet != null && String(s.id) === String(activeSet));
  const badges = [];
  if (job.draft) badges.push('<span class="badge">draft</span>');
  if (done) badges.push('<span class="badge ok">done</span>');
  if (isActive) badges.push(done ? '<span class="badge">current</span>' : '<span class="badge ok">printing</span>');
  if (job.acquired_by_ && !isActive) badges.push(`<span class="badge warn" title="printing it">on ${esc(nodeName(job.acquired_by_))}</span>`);
  else if (job.acquired && !isActive) badges.push('<span class="badge warn">acquired</span>');
  if (job.home_name || job.peer_) badges.push(`<span class="badge" title="its home node">home: ${esc(job.home_name || nodeName(job.peer_))}</span>`);
  if (Array.isArray(job.conflicts) && job.conflicts.length) badges.push(`<span class="badge bad">${job.conflicts.length} conflict(s)</span>`);
  const sets = job.sets.map((s) => `<li data-set="${esc(s.id)}" class="${activeSet != null && String(s.id) === String(activeSet) ? "active-set" : ""}" data-printable="${setNeeds(s).length || profileMismatch(s) ? "false" : "true"}">
      <span class="path">${esc(s.path)}</span>
      ${queueIsLan ? `<span>× ${esc(s.count)} per run</span>` : `<label>× <input type="number" class="set-count" min="0" max="100000" value="${esc(s.count)}" aria-label="Copies of ${esc(s.path)} per run"> per run</label>`}
      <span class="muted set-left">${copiesLeft(job, s)}</span>
      ${s.missing_file ? '<span class="badge bad">file missing</span>' : ""}
      ${setMaterials(s)}
      ${s.profiles && s.profiles.length ? `<span class="badge${profileMismatch(s) ? " bad" : ""}" title="printer profiles it is for">${esc(s.profiles.join(", "))}</span>` : ""}
    </li>`).join("");
  const conflicts = Array.isArray(job.conflicts) && job.conflicts.length
    ? `<div class="conflicts"><strong>Reports the queue could not count</strong><ul>${job.conflicts.map((c) =>
      `<li>${esc(conflictText(c))}</li>`).join("")}</ul></div>` : "";
  const waiting = job.waiting_reason ? `<div class="note">${esc(job.waiting_reason)}</div>` : "";
  const moves = queueNames.filter((n) => n !== queue).map((n) => `<option value="${esc(n)}">${esc(n)}</option>`).join("");
  const classes = ["job", job.draft ? "draft" : "", done ? "done" : "", isActive ? "active" : ""].filter(Boolean).join(" ");
  return `<li class="${classes}" draggable="true" data-key="${esc(keyOf(queue, job.id))}" data-queue="${esc(queue)}" data-id="${esc(job.id)}">
    <span class="grip" title="Drag to reorder" aria-hidden="true">⋮⋮</span>
    <div class="job-main">
      <div class="job-head"><input type="text" class="job-name" value="${esc(job.name)}" maxlength="1000" aria-label="Job name">${badges.join("")}</div>
      <div class="job-progress"><progress max="${Math.max(1, job.count)}" value="${Math.max(0, runsDone)}"></progress>
        <span class="job-runs">${done ? "all runs done" : `run ${runsDone + 1} of ${job.count}`}</span></div>
      <ul class="sets">${sets}</ul>
      ${waiting}${conflicts}
    </div>
    <div class="job-actions">
      <label>runs <input type="number" class="job-count" min="0" max="100000" value="${esc(job.count)}" aria-label="Runs of ${esc(job.name)}"></label>
      <label><input type="checkbox" class="job-draft" ${job.draft ? "checked" : ""}> draft</label>
      ${moves ? `<select class="job-move" aria-label="Move to queue"><option value="">Move to…</option>${moves}</select>` : ""}
      <button type="button" class="job-delete danger">Delete</button>
    </div>
  </li>`;
}

/** A set's copies in the job's words: this run's, then the whole job's (runs × copies). */
function copiesLeft(job, s) {
  const total = Math.max(0, job.remaining - 1) * s.count + Math.max(0, s.remaining);
  if (job.remaining <= 0) return `${esc(s.completed)} printed`;
  return `${esc(s.remaining)} of ${esc(s.count)} left in this run · ${esc(total)} left in all`;
}

/** A queue kept in etcd says when this node cannot reach etcd, since when and what that means. */
function linkNote(link) {
  if (!link || link.reachable) return "";
  const since = link.since ? ` since ${new Date(link.since * 1000).toLocaleTimeString()}` : "";
  return `etcd unreachable${since}: ${link.meaning || link.error || ""}`;
}

function queueSection(q) {
  let section = document.querySelector(`section.queue[data-queue="${CSS.escape(q.name)}"]`);
  if (!section) {
    section = document.createElement("section");
    section.className = "card queue";
    section.dataset.queue = q.name;
    section.innerHTML = `<div class="queue-head"><h2></h2><span class="meta"></span></div><div class="note link" hidden></div><ol class="jobs" data-queue=""></ol>`;
    const kind = q.link ? "etcd queue" : "LAN queue";
    section.querySelector("h2").textContent = q.name === "local" ? "Local queue" : `${kind}: ${q.name}`;
    section.querySelector("ol").dataset.queue = q.name;
  }
  return section;
}

export function renderQueues() {
  const s = view.state;
  if (!s || dragKey) return; // never re-render under a drag; the drop refreshes
  const container = $("queues");
  const queueNames = s.queues.map((q) => q.name);
  const seen = new Set();
  jobsByKey.clear();
  const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest("li.job");
  s.queues.forEach((q, i) => {
    const section = queueSection(q);
    if (container.children[i] !== section) container.insertBefore(section, container.children[i] || null);
    const pending = q.jobs.filter((j) => !j.draft && j.remaining > 0).length;
    const peers = q.peers && !Array.isArray(q.peers) ? Object.values(q.peers) : null;
    const online = peers ? peers.filter((p) => p.online !== false && String(p.status).toUpperCase() !== "OFFLINE").length : 0;
    const meta = `${q.jobs.length} job(s), ${pending} to print · ${q.strategy}${peers ? ` · ${online} of ${peers.length} peer(s) online` : ""}`;
    const metaEl = section.querySelector(".meta");
    if (metaEl.textContent !== meta) metaEl.textContent = meta;
    const linkEl = section.querySelector(".note.link");
    const linkText = linkNote(q.link);
    linkEl.hidden = !linkText;
    if (linkEl.textContent !== linkText) linkEl.textContent = linkText;
    const list = section.querySelector("ol.jobs");
    // Reuse rows whose content did not change; build the others in one parse.
    const want = [];
    const fresh = [];
    for (const job of q.jobs) {
      const key = keyOf(q.name, job.id);
      jobsByKey.set(key, job);
      seen.add(key);
      const sig = JSON.stringify([job, q.active_set, queueNames, view.materials, s.profile]);
      const cached = rowCache.get(key);
      if (cached && (cached.sig === sig || cached.el === focused)) want.push(cached.el);
      else { want.push(null); fresh.push({ key, sig, html: jobRow(job, q.name, q.active_set, queueNames), at: want.length - 1 }); }
    }
    if (fresh.length) {
      const t = document.createElement("template");
      t.innerHTML = fresh.map((f) => f.html).join("");
      const made = Array.from(t.content.children);
      fresh.forEach((f, n) => { rowCache.set(f.key, { sig: f.sig, el: made[n] }); want[f.at] = made[n]; paintSwatches(made[n]); });
    }
    want.forEach((el, n) => { if (list.children[n] !== el) list.insertBefore(el, list.children[n] || null); });
    while (list.children.length > want.length) list.lastElementChild.remove();
  });
  for (const section of Array.from(container.children)) {
    if (!queueNames.includes(section.dataset.queue)) section.remove();
  }
  for (const key of Array.from(rowCache.keys())) if (!seen.has(key)) rowCache.delete(key);
  // the queue picker of the add form
  const select = $("add-queue");
  const options = queueNames.map((n) => `<option value="${esc(n)}">${esc(n)}</option>`).join("");
  if (select.dataset.html !== options) {
    const current = select.value;
    select.innerHTML = options;
    select.dataset.html = options;
    if (queueNames.includes(current)) select.value = current;
  }
}

function rowJob(el) {
  const row = el.closest("li.job");
  return row ? { row, job: jobsByKey.get(row.dataset.key), queue: row.dataset.queue } : null;
}

function editJob(queue, job, changes, what) {
  return act(what, () => cp("job/edit", { json: JSON.stringify({ queue, id: job.id, ...changes }) }));
}

const queuesEl = $("queues");

queuesEl.addEventListener("change", (e) => {
  const hit = rowJob(e.target);
  if (!hit || !hit.job) return;
  const { job, queue } = hit;
  const t = e.target;
  if (t.classList.contains("job-name")) {
    const name = t.value.trim();
    if (name && name !== job.name) editJob(queue, job, { name }, "Rename");
  } else if (t.classList.contains("job-count")) {
    const count = parseInt(t.value, 10);
    if (Number.isInteger(count) && count >= 0 && count !== job.count) editJob(queue, job, { count }, "Change runs");
  } else if (t.classList.contains("set-count")) {
    const sid = t.closest("li[data-set]").dataset.set;
    const count = parseInt(t.value, 10);
    if (!Number.isInteger(count) || count < 0) return;
    const sets = job.sets.map((s) => {
      if (String(s.id) !== sid) return { id: s.id };
      const remaining = Math.min(count, Math.max(0, s.remaining + (count - s.count)));
      return { id: s.id, count, remaining };
    });
    editJob(queue, job, { sets }, "Change copies");
  } else if (t.classList.contains("job-draft")) {
    editJob(queue, job, { draft: t.checked }, "Draft");
  } else if (t.classList.contains("job-move")) {
    const dest = t.value;
    if (!dest) return;
    const destQueue = view.state.queues.find((q) => q.name === dest);
    const last = destQueue && destQueue.jobs.length ? destQueue.jobs[destQueue.jobs.length - 1].id : "";
    act("Move", () => cp("job/mv", { id: job.id, after_id: last, src_queue: queue, dest_queue: dest }),
      { success: `Moved “${job.name}” to ${dest}` });
  }
});

queuesEl.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && e.target.matches("input.job-name, input.job-count, input.set-count")) e.target.blur();
});
queuesEl.addEventListener("focusout", () => setTimeout(() => {
  if (!document.activeElement || !document.activeElement.closest || !document.activeElement.closest("li.job")) renderQueues();
}, 0));

queuesEl.addEventListener("click", (e) => {
  const button = e.target.closest("button.job-delete");
  if (!button) return;
  const hit = rowJob(button);
  if (!hit || !hit.job) return;
  if (!button.classList.contains("confirm")) {
    button.classList.add("confirm");
    button.textContent = "Really delete?";
    setTimeout(() => { button.classList.remove("confirm"); button.textContent = "Delete"; }, 4000);
    return;
  }
  button.disabled = true;
  act("Delete", () => cp("job/rm", { queue: hit.queue, "job_ids[]": [hit.job.id] }), { success: `Deleted “${hit.job.name}”` });
});

// Drag and drop: drop above or below a row (by the pointer's half), or on a queue's free space.
export let marked = null;
function clearMark() {
  if (marked) marked.classList.remove("drop-before", "drop-after", "drop-end");
  marked = null;
}

queuesEl.addEventListener("dragstart", (e) => {
  const row = e.target.closest && e.target.closest("li.job");
  if (!row || e.target.matches("input, select, button")) return;
  dragKey = row.dataset.key;
  row.classList.add("dragging");
  e.dataTransfer.effectAllowed = "move";
  e.dataTransfer.setData("text/plain", row.dataset.key);
});

function dropTarget(e) {
  const list = e.target.closest && e.target.closest("ol.jobs");
  if (!list) return null;
  const row = e.target.closest("li.job");
  if (row && row.dataset.key !== dragKey) {
    const box = row.getBoundingClientRect();
    const before = e.clientY < box.top + box.height / 2;
    return { list, row, before };
  }
  if (row) return { list, row, before: null }; // over itself: no move
  return { list, row: null, before: false };
}

queuesEl.addEventListener("dragover", (e) => {
  if (!dragKey) return;
  const t = dropTarget(e);
  if (!t) return;
  e.preventDefault();
  e.dataTransfer.dropEffect = "move";
  clearMark();
  if (t.row && t.before !== null) { marked = t.row; t.row.classList.add(t.before ? "drop-before" : "drop-after"); }
  else if (!t.row) { marked = t.list; t.list.classList.add("drop-end"); }
});

queuesEl.addEventListener("drop", (e) => {
  if (!dragKey) return;
  const t = dropTarget(e);
  clearMark();
  const moving = jobsByKey.get(dragKey);
  const srcQueue = JSON.parse(dragKey)[0];
  if (!t || !moving || (t.row && t.before === null)) return;
  e.preventDefault();
  const dest = t.list.dataset.queue;
  const rows = Array.from(t.list.children).filter((r) => r.dataset.key !== dragKey);
  let after = "";
  if (!t.row) after = rows.length ? jobsByKey.get(rows[rows.length - 1].dataset.key).id : "";
  else if (!t.before) after = jobsByKey.get(t.row.dataset.key).id;
  else {
    const i = rows.indexOf(t.row);
    after = i > 0 ? jobsByKey.get(rows[i - 1].dataset.key).id : "";
  }
  // Show the new order at once; the node's answer (and its event) confirm it.
  const row = rowCache.get(dragKey)?.el;
  if (row && dest === srcQueue) {
    if (!t.row) t.list.append(row);
    else t.list.insertBefore(row, t.before ? t.row : t.row.nextSibling);
  }
  act("Move", () => cp("job/mv", { id: moving.id, after_id: after, src_queue: srcQueue, dest_queue: dest }));
});

queuesEl.addEventListener("dragend", () => {
  clearMark();
  document.querySelectorAll("li.job.dragging").forEach((r) => r.classList.remove("dragging"));
  dragKey = null;
  refresh("state");
});
