/* lanqueue web page: watch and steer one node and its LAN queues.
 *
 * Plain JavaScript, no build step, no outside requests. Data comes from the node's HTTP API
 * (the Continuous Print routes and OctoPrint's /api/job and /api/printer); live updates arrive
 * as server-sent events from /lanqueue/events, each naming what changed, and the page re-fetches
 * just that (one request of each kind in flight at a time; changes arriving meanwhile are folded
 * into one more round).
 */
"use strict";

(() => {
  const CP = "/plugin/continuousprint";
  const KEY_STORE = "lanqueue.apikey";
  const $ = (id) => document.getElementById(id);

  const view = {
    state: null,        // state/get
    printer: null,      // /api/printer (null when not operational)
    job: null,          // /api/job
    history: [],        // history/get
    nodePeers: null,    // /lanqueue/peers, when the node has that route
    peersRoute: true,   // false once /lanqueue/peers answered 404
    materials: [],      // materials/get: the material loaded in each tool (null/"" = none)
  };
  const jobsByKey = new Map();   // keyOf(queue, id) -> job object of the last state
  const rowCache = new Map();    // same key -> {sig, el}
  let apiKey = null;
  let dragKey = null;
  let events = null;

  // --- small helpers ------------------------------------------------------------------------

  const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ESC[c]);
  const keyOf = (queue, id) => JSON.stringify([queue, String(id)]);

  function toast(message, kind = "info") {
    const el = document.createElement("div");
    el.className = `toast ${kind}`;
    el.textContent = message;
    $("toasts").append(el);
    setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
  }

  function duration(seconds) {
    if (seconds == null || !isFinite(seconds)) return "";
    seconds = Math.max(0, Math.round(seconds));
    const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    return h ? `${h}h ${m}m` : m ? `${m}m ${s}s` : `${s}s`;
  }

  function clock(epoch) {
    if (!epoch) return "";
    const d = new Date(epoch * 1000);
    const today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString() : d.toLocaleString();
  }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  // --- the API key ----------------------------------------------------------------------------

  function takeKeyFromAddress() {
    const url = new URL(location.href);
    const given = url.searchParams.get("apikey");
    if (given) {
      localStorage.setItem(KEY_STORE, given);
      url.searchParams.delete("apikey");
      history.replaceState(null, "", url.pathname + url.search + url.hash);
    }
    apiKey = localStorage.getItem(KEY_STORE);
  }

  function askKey(message) {
    const dialog = $("key-dialog");
    $("key-error").hidden = !message;
    $("key-error").textContent = message || "";
    $("key-input").value = "";
    if (!dialog.open) dialog.showModal();
    $("key-input").focus();
  }

  $("key-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const candidate = $("key-input").value.trim();
    if (!candidate) return;
    const res = await fetch(`${CP}/state/get`, { headers: { "X-Api-Key": candidate } }).catch(() => null);
    if (!res || !res.ok) {
      $("key-error").hidden = false;
      $("key-error").textContent = res && res.status === 403 ? "That key was refused." : "The node did not answer.";
      return;
    }
    apiKey = candidate;
    localStorage.setItem(KEY_STORE, candidate);
    $("key-dialog").close();
    start();
  });
  $("key-dialog").addEventListener("cancel", (e) => { if (!apiKey) e.preventDefault(); });
  $("change-key").addEventListener("click", () => askKey(""));

  // --- talking to the node -----------------------------------------------------------------

  async function api(method, path, { form, json, body, quiet } = {}) {
    const headers = { "X-Api-Key": apiKey || "" };
    let payload = body;
    if (form) {
      payload = new URLSearchParams();
      for (const [k, v] of Object.entries(form)) {
        if (Array.isArray(v)) v.forEach((x) => payload.append(k, String(x)));
        else if (v !== undefined && v !== null) payload.append(k, String(v));
      }
    } else if (json !== undefined) {
      payload = JSON.stringify(json);
      headers["Content-Type"] = "application/json";
    }
    let res;
    try {
      res = await fetch(path, { method, headers, body: payload, cache: "no-store" });
    } catch (err) {
      throw new ApiError(0, "the node did not answer");
    }
    let data = null;
    const text = await res.text();
    if (text) { try { data = JSON.parse(text); } catch { data = text; } }
    if (res.status === 403 && !quiet) askKey("The node refused the API key.");
    if (!res.ok) throw new ApiError(res.status, (data && data.error) || res.statusText || `HTTP ${res.status}`);
    return data;
  }

  /** Run an action from a button or a field: errors become a toast, state is refreshed. */
  async function act(what, fn, { success } = {}) {
    try {
      const out = await fn();
      if (success) toast(success);
      return out;
    } catch (err) {
      toast(`${what}: ${err.message}`, "error");
      refresh("state");
      return undefined;
    }
  }

  const cp = (path, form) => api("POST", `${CP}/${path}`, { form });

  // --- loading, coalesced -------------------------------------------------------------------

  const dirty = new Set();
  let loading = false;

  function refresh(...kinds) {
    kinds.forEach((k) => dirty.add(k));
    if (!loading) loadLoop();
  }

  async function loadLoop() {
    loading = true;
    try {
      while (dirty.size) {
        const kinds = new Set(dirty);
        dirty.clear();
        const tasks = [];
        if (kinds.has("state")) tasks.push(loadState());
        if (kinds.has("history")) tasks.push(loadHistory());
        if (kinds.has("printer")) tasks.push(loadPrinter());
        if (kinds.has("peers")) tasks.push(loadPeers());
        if (kinds.has("materials")) tasks.push(loadMaterials());
        await Promise.allSettled(tasks);
      }
    } finally {
      loading = false;
    }
  }

  async function loadState() {
    try {
      view.state = await api("GET", `${CP}/state/get`);
      renderDriver();
      renderQueues();
      renderPeers();
      renderActions();
      if ($("settings").open && !$("panel-materials").hidden) renderNeeded();
      // for bench/web_bench.py: when the queues were first on the page
      if (!performance.getEntriesByName("lanqueue-queues-rendered").length) {
        performance.mark("lanqueue-queues-rendered");
        requestAnimationFrame(() => setTimeout(() => performance.mark("lanqueue-queues-painted"), 0));
      }
    } catch (err) {
      if (err.status !== 403) $("status-text").textContent = `Cannot reach the node: ${err.message}`;
    }
  }

  async function loadHistory() {
    try {
      view.history = await api("GET", `${CP}/history/get`);
      renderHistory();
    } catch { /* shown by loadState */ }
  }

  async function loadPrinter() {
    try {
      view.job = await api("GET", "/api/job");
    } catch { view.job = null; }
    try {
      view.printer = await api("GET", "/api/printer", { quiet: true });
    } catch { view.printer = null; }
    renderPrinter();
    renderActions();
  }

  async function loadPeers() {
    if (!view.peersRoute) return;
    try {
      view.nodePeers = await api("GET", "/lanqueue/peers", { quiet: true });
    } catch (err) {
      if (err.status === 404 || err.status === 405) view.peersRoute = false;
      view.nodePeers = null;
    }
    renderPeers();
    renderActions();
  }

  // --- live updates -------------------------------------------------------------------------

  let fallbackTimer = null;

  function setLive(state, text) {
    $("live").dataset.state = state;
    $("live-text").textContent = text;
  }

  function connectEvents() {
    if (events) events.close();
    if (!window.EventSource) {
      setLive("off", "No live updates");
      refresh("state", "history", "printer", "peers", "materials");
      startFallback();
      return;
    }
    const source = new EventSource(`/lanqueue/events?apikey=${encodeURIComponent(apiKey)}`);
    events = source;
    // The first load waits for `hello` (the stream is subscribed, so nothing can slip between
    // the load and the first event); a reconnect loads everything again for what it missed.
    const firstLoad = setTimeout(() => refresh("state", "history", "printer", "peers", "materials"), 1500);
    source.addEventListener("hello", () => {
      clearTimeout(firstLoad);
      setLive("on", "Live");
      stopFallback();
      refresh("state", "history", "printer", "peers", "materials");
    });
    source.addEventListener("change", (e) => {
      let kinds = [];
      try { kinds = JSON.parse(e.data).kinds || []; } catch { /* ignore a malformed event */ }
      const want = new Set();
      for (const k of kinds) {
        if (k === "queues") { want.add("state"); want.add("history"); want.add("materials"); } // any stored change, materials too
        else if (k === "driver") { want.add("state"); want.add("history"); want.add("peers"); }
        else if (k === "printer") want.add("printer");
        else if (k === "peers") { want.add("peers"); want.add("state"); }
      }
      refresh(...want);
    });
    source.onerror = () => {
      if (source !== events) return;
      setLive("retry", "Reconnecting…");
      startFallback();
      if (source.readyState === EventSource.CLOSED) {
        // refused (e.g. a wrong key) or the node restarted: try again in a while
        setTimeout(() => { if (source === events) connectEvents(); }, 5000);
      }
    };
  }

  // Without the event stream, look again every 10 s (and only then).
  function startFallback() {
    if (!fallbackTimer) fallbackTimer = setInterval(() => refresh("state", "printer", "history"), 10000);
  }
  function stopFallback() {
    if (fallbackTimer) { clearInterval(fallbackTimer); fallbackTimer = null; }
  }

  // --- driver and needs-action ---------------------------------------------------------------

  function renderDriver() {
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

  const GONE = new Set(["GONE", "OFFLINE", "LOST", "DEAD", "UNREACHABLE"]);

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

  function renderActions() {
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

  // --- queues ----------------------------------------------------------------------------------

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
        ${queueIsLan ? `<span>× ${esc(s.count)}</span>` : `<label>× <input type="number" class="set-count" min="0" max="100000" value="${esc(s.count)}" aria-label="Copies of ${esc(s.path)}"></label>`}
        <span class="muted">${esc(s.completed)} done, ${esc(s.remaining)} left</span>
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
        <div class="job-head"><input type="text" class="job-name" value="${esc(job.name)}" maxlength="200" aria-label="Job name">${badges.join("")}</div>
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

  function queueSection(q) {
    let section = document.querySelector(`section.queue[data-queue="${CSS.escape(q.name)}"]`);
    if (!section) {
      section = document.createElement("section");
      section.className = "card queue";
      section.dataset.queue = q.name;
      section.innerHTML = `<div class="queue-head"><h2></h2><span class="meta"></span></div><ol class="jobs" data-queue=""></ol>`;
      section.querySelector("h2").textContent = q.name === "local" ? "Local queue" : `LAN queue: ${q.name}`;
      section.querySelector("ol").dataset.queue = q.name;
    }
    return section;
  }

  function renderQueues() {
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
  let marked = null;
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

  // --- adding a job ------------------------------------------------------------------------

  function upload(file, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      const data = new FormData();
      data.append("file", file, file.name);
      xhr.open("POST", "/api/files/local");
      xhr.setRequestHeader("X-Api-Key", apiKey || "");
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(100 * e.loaded / e.total); };
      xhr.onload = () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
        if (xhr.status >= 200 && xhr.status < 300) resolve(body);
        else reject(new ApiError(xhr.status, (body && body.error) || `upload failed (HTTP ${xhr.status})`));
      };
      xhr.onerror = () => reject(new ApiError(0, "the upload was interrupted"));
      xhr.send(data);
    });
  }

  $("add-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const file = $("add-file").files[0];
    if (!file) return;
    const bar = $("add-progress");
    const submit = $("add-submit");
    submit.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    const queue = $("add-queue").value || "local";
    const ok = await act("Add job", async () => {
      const stored = await upload(file, (p) => { bar.value = p; });
      const path = stored.files.local.path;
      if (path.toLowerCase().endsWith(".gjob")) {
        return cp("job/import", { queue: "local", path });
      }
      return cp("set/add", {
        path, count: $("add-count").value || 1, jobName: $("add-name").value.trim() || undefined,
        jobDraft: $("add-draft").checked, queue,
      });
    }, { success: `Added ${file.name}` });
    submit.disabled = false;
    bar.hidden = true;
    if (ok) { $("add-form").reset(); $("add-queue").value = queue; }
  });

  // --- printer -------------------------------------------------------------------------------

  function renderPrinter() {
    const job = view.job;
    const printer = view.printer;
    const stateText = (printer && printer.state && printer.state.text) || (job && job.state) || "Offline";
    const badge = $("printer-state");
    badge.textContent = stateText;
    badge.dataset.state = stateText;
    const error = (printer && printer.state && printer.state.error) || (job && job.error) || "";
    $("printer-error").hidden = !error;
    $("printer-error").textContent = error;
    const temps = printer ? printer.temperature || {} : {};
    const names = Object.keys(temps).sort((a, b) => (a === "bed") - (b === "bed") || a.localeCompare(b));
    const tempsHtml = names.length ? names.map((n) => {
      const t = temps[n];
      const actual = t.actual == null ? "–" : Number(t.actual).toFixed(1);
      const target = t.target == null || Number(t.target) === 0 ? "off" : `${Number(t.target).toFixed(0)} °C`;
      return `<dt>${esc(n === "bed" ? "Bed" : n.replace(/^tool/, "Hotend "))}</dt><dd data-heater="${esc(n)}">${actual} °C <span class="muted">→ ${target}</span></dd>`;
    }).join("") : '<dt>Temperatures</dt><dd class="muted">unknown</dd>';
    const temperaturesEl = $("temps");
    if (temperaturesEl.dataset.html !== tempsHtml) { temperaturesEl.innerHTML = tempsHtml; temperaturesEl.dataset.html = tempsHtml; }
    const file = job && job.job && job.job.file && (job.job.file.display || job.job.file.name);
    $("printer-file").textContent = file || "none";
    $("printer-file").classList.toggle("muted", !file);
    const p = (job && job.progress) || {};
    const pct = p.completion == null ? null : Math.max(0, Math.min(100, p.completion));
    $("printer-progress").value = pct == null ? 0 : pct;
    $("printer-percent").textContent = pct == null ? "–" : `${pct.toFixed(1)} %`;
    const times = [];
    if (p.printTime != null) times.push(`${duration(p.printTime)} elapsed`);
    if (p.printTimeLeft != null) times.push(`${duration(p.printTimeLeft)} left`);
    $("printer-times").textContent = times.join(" · ");
  }

  // --- peers ---------------------------------------------------------------------------------

  function peerList(raw) {
    // /lanqueue/peers may answer a list, {peers: [...]}, or a map of id -> peer
    if (!raw) return [];
    const src = Array.isArray(raw) ? raw : Array.isArray(raw.peers) ? raw.peers : typeof raw === "object" ? Object.entries(raw).map(([id, p]) => ({ id, ...(p || {}) })) : [];
    return src.filter((p) => p && typeof p === "object");
  }

  function currentJobText(p) {
    const run = p.run || p.current_job || p.job;
    if (run && typeof run === "object") {
      const name = run.job_name || run.name || run.set_path || run.path || "";
      const active = run.active === false || run.end ? ` (last: ${run.result || "done"})` : "";
      return `${name}${active}`;
    }
    if (typeof run === "string") return run;
    return p.active_set != null ? `set ${p.active_set}` : "";
  }

  function renderPeers() {
    const blocks = [];
    for (const q of view.state?.queues || []) {
      if (!q.peers || Array.isArray(q.peers)) continue;
      const rows = Object.entries(q.peers).map(([id, p]) => `<tr data-peer="${esc(id)}">
        <td>${esc(p.name || id)}</td><td><span class="badge ${String(p.status).toUpperCase() === "BUSY" ? "ok" : GONE.has(String(p.status).toUpperCase()) ? "bad" : ""}">${esc(p.status || "?")}</span></td>
        <td>${esc(currentJobText(p)) || '<span class="muted">–</span>'}</td><td class="muted">${esc(p.profile && p.profile.name ? p.profile.name : "")}</td></tr>`).join("");
      blocks.push(`<h3>${esc(q.name)}</h3><table><thead><tr><th>Node</th><th>State</th><th>Current job</th><th>Profile</th></tr></thead>
        <tbody>${rows || '<tr><td colspan="4" class="muted">no peers seen yet</td></tr>'}</tbody></table>`);
    }
    const nodes = peerList(view.nodePeers);
    if (nodes.length) {
      const rows = nodes.map((p) => {
        const status = String(p.status || p.state || "");
        const online = status.toLowerCase() === "online";
        const printer = p.printer_status ? ` · ${p.printer_status}` : "";
        const where = p.address ? `${p.address}${p.port ? `:${p.port}` : ""}` : (p.base_url || p.addr || "");
        return `<tr data-node="${esc(p.node_id || p.id || "")}"><td>${esc(p.name || p.node_id || p.id || "?")}</td>
          <td><span class="badge ${online ? "ok" : "bad"}">${esc(status || "?")}</span>${esc(printer)}</td>
          <td>${esc(currentJobText(p)) || '<span class="muted">–</span>'}</td><td class="muted">${esc(where)}</td></tr>`;
      }).join("");
      blocks.push(`<h3>Nodes on the LAN</h3><table><thead><tr><th>Node</th><th>State</th><th>Current job</th><th>Address</th></tr></thead><tbody>${rows}</tbody></table>`);
    }
    if (view.nodePeers && view.nodePeers.name) {
      const label = `${view.nodePeers.name} · ${location.host}`;
      if ($("node-host").textContent !== label) {
        $("node-host").textContent = label;
        document.title = `lanqueue · ${view.nodePeers.name}`;
      }
    }
    const html = blocks.length ? blocks.join("") : '<p class="muted">No LAN queues on this node.</p>';
    const el = $("peers");
    if (el.dataset.html !== html) { el.innerHTML = html; el.dataset.html = html; }
  }

  // --- history ------------------------------------------------------------------------------

  function renderHistory() {
    const rows = (view.history || []).slice(0, 50).map((r) => `<tr>
      <td>${esc(r.job_name)}<div class="muted">${esc(r.set_path)} · ${esc(r.queue_name)}</div></td>
      <td>${esc(clock(r.start))}</td><td>${esc(r.end ? duration(r.end - r.start) : "")}</td>
      <td><span class="badge" data-result="${esc(r.result || "running")}">${esc(r.active ? "printing" : r.result || "")}</span></td></tr>`).join("");
    $("history").innerHTML = rows || '<tr><td colspan="4" class="muted">Nothing printed yet.</td></tr>';
  }

  $("history-reset").addEventListener("click", (e) => {
    const button = e.currentTarget;
    if (!button.classList.contains("confirm")) {  // two clicks: history cannot be brought back
      button.classList.add("confirm", "danger");
      button.textContent = "Really clear?";
      setTimeout(() => { button.classList.remove("confirm", "danger"); button.textContent = "Clear"; }, 4000);
      return;
    }
    button.classList.remove("confirm", "danger");
    button.textContent = "Clear";
    act("Clear history", () => api("POST", `${CP}/history/reset`), { success: "History cleared" });
  });

  // --- materials ------------------------------------------------------------------------------

  const HEX = /^#?([0-9a-f]{3}|[0-9a-f]{6})$/i;

  /** `PLA_red_#ff0000` -> {type: "PLA", colour: "red", hex: "#ff0000"}; missing parts are "". */
  function materialParts(spec) {
    const parts = String(spec || "").split("_");
    const hex = parts.slice(2).join("_");
    return { type: parts[0] || "", colour: parts[1] || "", hex: HEX.test(hex) ? (hex.startsWith("#") ? hex : `#${hex}`) : "" };
  }

  function materialChip(spec) {
    const m = materialParts(spec);
    const label = [m.type, m.colour].filter(Boolean).join(" ") || spec;
    const swatch = m.hex ? `<span class="swatch" data-color="${esc(m.hex)}" aria-hidden="true"></span>` : "";
    return `<span class="mat-chip" title="${esc(spec)}">${swatch}${esc(label)}</span>`;
  }

  /** Inline style attributes are refused by the page's CSP; colours are set through the CSSOM. */
  function paintSwatches(root) {
    root.querySelectorAll("[data-color]").forEach((el) => { el.style.backgroundColor = el.dataset.color; });
  }

  /** What a set lacks on this printer (the driver's own rule, model.set_printable). */
  function setNeeds(s) {
    const loaded = view.materials || [];
    const needs = [];
    (s.materials || []).forEach((wanted, tool) => {
      if (wanted && (loaded[tool] || null) !== wanted) needs.push({ tool, wanted });
    });
    return needs;
  }

  function profileMismatch(s) {
    const profile = view.state && view.state.profile;
    return Array.isArray(s.profiles) && s.profiles.length && profile && !s.profiles.includes(profile);
  }

  async function loadMaterials() {
    try {
      const got = await api("GET", `${CP}/materials/get`);
      view.materials = Array.isArray(got) ? got : [];
    } catch { return; }
    renderLoadedMaterials();
    renderQueues();
    // the form follows the node until someone edits it (and is left alone when it already agrees)
    const same = JSON.stringify(formMaterials()) === JSON.stringify(view.materials.map((m) => m || ""));
    if (!materialsEdited && !same) renderMaterialRows(view.materials);
  }

  function renderLoadedMaterials() {
    const list = view.materials || [];
    const html = list.length ? list.map((m, tool) => `<li data-tool="${tool}"><span class="muted">Tool ${tool}</span>
        ${m ? materialChip(m) : '<span class="muted">nothing / unknown</span>'}</li>`).join("")
      : '<li class="muted">None set: only sets without material needs are printed.</li>';
    const el = $("loaded-materials");
    if (el.dataset.html !== html) { el.innerHTML = html; el.dataset.html = html; paintSwatches(el); }
  }

  let materialsEdited = false;

  function materialRowHtml(tool, value) {
    return `<li data-tool="${tool}"><label><span>Tool ${tool}</span>
      <input type="text" class="mat-input" list="material-suggestions" maxlength="100" value="${esc(value || "")}" placeholder="empty: nothing / unknown" aria-label="Material in tool ${tool}" spellcheck="false"></label>
      <span class="swatch big" aria-hidden="true"></span></li>`;
  }

  function renderMaterialRows(values) {
    $("materials-rows").innerHTML = values.map((v, i) => materialRowHtml(i, v)).join("");
    $("materials-rows").querySelectorAll("li").forEach(updateSwatch);
    materialsEdited = false;
    updateMaterialButtons();
    renderNeeded();
  }

  function updateSwatch(li) {
    const hex = materialParts(li.querySelector("input").value.trim()).hex;
    const sw = li.querySelector(".swatch");
    sw.style.backgroundColor = hex || "";
    sw.classList.toggle("empty", !hex);
  }

  function updateMaterialButtons() {
    const rows = $("materials-rows").children.length;
    $("materials-remove").disabled = rows === 0;
    $("materials-add").disabled = rows >= 16;
  }

  function formMaterials() {
    return Array.from($("materials-rows").querySelectorAll("input.mat-input")).map((i) => i.value.trim());
  }

  /** Materials the queued sets ask for that the form does not hold, with a button to load each. */
  function renderNeeded() {
    const form = formMaterials();
    const wanted = new Map();
    for (const q of view.state?.queues || []) {
      for (const j of q.jobs) {
        if (j.draft || j.remaining <= 0) continue;
        for (const s of j.sets) {
          if (s.remaining <= 0) continue;
          (s.materials || []).forEach((m, tool) => { if (m && form[tool] !== m) wanted.set(`${tool}\n${m}`, { tool, m }); });
        }
      }
    }
    const suggestions = new Set(form.filter(Boolean));
    for (const { m } of wanted.values()) suggestions.add(m);
    const dl = Array.from(suggestions).map((m) => `<option value="${esc(m)}"></option>`).join("");
    if ($("material-suggestions").innerHTML !== dl) $("material-suggestions").innerHTML = dl;
    const el = $("materials-needed");
    el.innerHTML = wanted.size ? `Queued sets also need: ${Array.from(wanted.values()).map(({ tool, m }) =>
      `<button type="button" class="small-inline" data-load-tool="${tool}" data-material="${esc(m)}" title="Put ${esc(m)} in tool ${tool} (then save)">Load ${materialChip(m)} in tool ${tool}</button>`).join(" ")}` : "";
    paintSwatches(el);
  }

  $("materials-rows").addEventListener("input", (e) => {
    const li = e.target.closest("li");
    if (li) updateSwatch(li);
    materialsEdited = true;
    renderNeeded();
  });
  $("materials-add").addEventListener("click", () => {
    const rows = $("materials-rows");
    rows.insertAdjacentHTML("beforeend", materialRowHtml(rows.children.length, ""));
    updateSwatch(rows.lastElementChild);
    rows.lastElementChild.querySelector("input").focus();
    materialsEdited = true;
    updateMaterialButtons();
  });
  $("materials-remove").addEventListener("click", () => {
    $("materials-rows").lastElementChild?.remove();
    materialsEdited = true;
    updateMaterialButtons();
    renderNeeded();
  });
  $("materials-needed").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-load-tool]");
    if (!b) return;
    const tool = Number(b.dataset.loadTool);
    const rows = $("materials-rows");
    while (rows.children.length <= tool) rows.insertAdjacentHTML("beforeend", materialRowHtml(rows.children.length, ""));
    rows.children[tool].querySelector("input").value = b.dataset.material;
    rows.querySelectorAll("li").forEach(updateSwatch);
    materialsEdited = true;
    updateMaterialButtons();
    renderNeeded();
  });
  $("materials-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const values = formMaterials();
    // one JSON list: repeated fields would be split at commas when there is only one tool
    const form = new URLSearchParams({ materials: JSON.stringify(values.map((v) => v || null)) });
    await saving("materials", async () => {
      const got = await api("POST", `${CP}/materials/set`, { body: form });
      view.materials = Array.isArray(got) ? got : values;
      renderLoadedMaterials();
      // what was typed meanwhile stays (and stays unsaved)
      if (JSON.stringify(formMaterials()) === JSON.stringify(values)) renderMaterialRows(view.materials);
      renderQueues();
      refresh("state");
      toast("Materials saved");
    });
  });

  $("materials-change").addEventListener("click", () => openSettings("materials"));
  updateMaterialButtons();

  /** Run a settings save: a refusal is shown next to the form (and nothing else changes). */
  async function saving(what, fn, refused = "Not saved") {
    const err = $(`${what}-error`);
    const button = $(`${what}-save`);
    err.hidden = true;
    button.disabled = true;
    try {
      await fn();
    } catch (e) {
      err.textContent = `${refused}: ${e.message}`;
      err.hidden = false;
    } finally {
      button.disabled = false;
    }
  }

  // --- settings area: tabs ------------------------------------------------------------------

  const TABS = ["materials", "automation", "driver", "queues"];

  function selectTab(name, focus) {
    for (const t of TABS) {
      const tab = $(`tab-${t}`);
      const on = t === name;
      tab.setAttribute("aria-selected", String(on));
      tab.tabIndex = on ? 0 : -1;
      $(`panel-${t}`).hidden = !on;
      if (on && focus) tab.focus();
    }
    loadTab(name);
  }

  function loadTab(name) {
    if (name === "materials") { if (!materialsEdited) refresh("materials"); renderNeeded(); }
    else if (name === "automation") { if (!autoDirty()) loadAutomation(); }
    else if (name === "driver") loadDriver();
    else if (name === "queues") loadQueueSettings();
  }

  document.querySelector("#settings .tabs").addEventListener("click", (e) => {
    const tab = e.target.closest("[role=tab]");
    if (tab) selectTab(tab.id.slice(4));
  });
  document.querySelector("#settings .tabs").addEventListener("keydown", (e) => {
    const i = TABS.indexOf(document.activeElement.id.slice(4));
    if (i < 0) return;
    let next = null;
    if (e.key === "ArrowRight") next = TABS[(i + 1) % TABS.length];
    else if (e.key === "ArrowLeft") next = TABS[(i + TABS.length - 1) % TABS.length];
    else if (e.key === "Home") next = TABS[0];
    else if (e.key === "End") next = TABS[TABS.length - 1];
    if (next) { e.preventDefault(); selectTab(next, true); }
  });

  function currentTab() {
    return TABS.find((t) => $(`tab-${t}`).getAttribute("aria-selected") === "true") || "materials";
  }

  function openSettings(tab) {
    const details = $("settings");
    details.open = true;
    selectTab(tab || currentTab());
    details.scrollIntoView({ behavior: "smooth", block: "start" });
  }

  $("open-settings").addEventListener("click", () => openSettings());
  $("settings").addEventListener("toggle", () => {
    $("open-settings").setAttribute("aria-expanded", String($("settings").open));
    if ($("settings").open) loadTab(currentTab());
  });

  // --- settings area: scripts, preprocessors, events ----------------------------------------

  const EVENT_TEXT = {
    continuousprint_activate: ["When managing starts", ""],
    continuousprint_start_print: ["Before each print", ""],
    continuousprint_success: ["After each successful print", "clearing the bed"],
    continuousprint_cooldown: ["Managed cooldown", "before clearing, when enabled under Driver"],
    continuousprint_finish: ["When the queue is done", ""],
    continuousprint_cancel: ["When a print is cancelled", ""],
    continuousprint_awaiting_material: ["When a set needs another material", ""],
    continuousprint_deactivate: ["When managing stops", ""],
  };
  const PAUSE = /^[ \t]*@pause\b/m;
  const auto = { saved: null, draft: null };
  const clone = (o) => JSON.parse(JSON.stringify(o));
  const autoDirty = () => auto.draft !== null && JSON.stringify(auto.draft) !== JSON.stringify(auto.saved);

  async function loadAutomation() {
    try {
      auto.saved = await api("GET", `${CP}/automation/get`);
      auto.draft = clone(auto.saved);
      $("auto-error").hidden = true;
      renderAutomation();
    } catch (e) {
      $("auto-error").textContent = `Could not load the scripts: ${e.message}`;
      $("auto-error").hidden = false;
    }
  }

  function options(names, selected, none) {
    const opts = names.map((n) => `<option value="${esc(n)}"${n === selected ? " selected" : ""}>${esc(n)}</option>`);
    if (none !== undefined) opts.unshift(`<option value=""${!selected ? " selected" : ""}>${esc(none)}</option>`);
    return opts.join("");
  }

  function usedBy(kind, name) {
    const out = [];
    for (const [ev, list] of Object.entries(auto.draft.events)) {
      if (list.some((a) => (kind === "script" ? a.script : a.preprocessor) === name)) out.push((EVENT_TEXT[ev] || [ev])[0]);
    }
    return out;
  }

  const PERSON_BADGE = '<span class="badge warn" title="contains @pause: the queue stops until someone presses Bed cleared – continue">waits for a person</span>';

  function renderAutomation() {
    const d = auto.draft;
    if (!d) return;
    const scripts = Object.keys(d.scripts);
    const pres = Object.keys(d.preprocessors);
    $("auto-events").innerHTML = Object.entries(d.events).map(([ev, list]) => {
      const [title, note] = EVENT_TEXT[ev] || [ev, ""];
      const rows = list.map((a, i) => `<li data-index="${i}">
          <label><span class="sr-only">Script</span><select class="att-script" aria-label="Script ${i + 1} of ${esc(title)}">${options(scripts, a.script)}</select></label>
          <label class="att-if"><span>if</span><select class="att-pre" aria-label="Preprocessor of script ${i + 1} of ${esc(title)}">${options(pres, a.preprocessor, "always")}</select></label>
          ${PAUSE.test(d.scripts[a.script] || "") ? PERSON_BADGE : ""}
          <span class="att-buttons">${i ? `<button type="button" class="att-up ghost" aria-label="Run ${esc(a.script)} earlier in ${esc(title)}" title="Run earlier">↑</button>` : ""}
          <button type="button" class="att-remove ghost" aria-label="Detach ${esc(a.script)} from ${esc(title)}">Detach</button></span></li>`).join("");
      return `<div class="auto-event" data-event="${esc(ev)}">
        <div class="event-head"><strong>${esc(title)}</strong>${note ? ` <span class="muted">(${esc(note)})</span>` : ""} <code class="muted">${esc(ev)}</code></div>
        ${rows ? `<ol class="attachments">${rows}</ol>` : '<p class="muted none">Nothing runs.</p>'}
        <button type="button" class="att-add small-inline" ${scripts.length ? "" : "disabled"}>Attach a script</button></div>`;
    }).join("");
    const item = (kind, name, body) => {
      const uses = usedBy(kind, name);
      return `<div class="auto-item" data-kind="${kind}" data-name="${esc(name)}">
        <div class="item-head"><input type="text" class="item-name" value="${esc(name)}" maxlength="100" size="${Math.min(40, Math.max(8, name.length + 2))}" aria-label="Name of ${kind} ${esc(name)}" title="Rename">${kind === "script" && PAUSE.test(body) ? PERSON_BADGE : ""}
          <span class="muted">${uses.length ? `used by: ${esc(uses.join(", "))}` : "not attached"}</span>
          <button type="button" class="item-delete danger ghost">Delete</button></div>
        <textarea class="item-body" wrap="off" rows="${Math.min(12, Math.max(3, body.split("\n").length + 1))}" spellcheck="false"
          aria-label="${kind === "script" ? "G-code of script" : "Program of preprocessor"} ${esc(name)}">${esc(body)}</textarea></div>`;
    };
    $("auto-scripts").innerHTML = scripts.map((n) => item("script", n, d.scripts[n])).join("") || '<p class="muted">No scripts.</p>';
    $("auto-preprocessors").innerHTML = pres.map((n) => item("preprocessor", n, d.preprocessors[n])).join("") || '<p class="muted">No preprocessors.</p>';
    renderTryOptions();
    renderCallout();
    markDirty();
  }

  /** Whether the queue stops for a person after each print: an after-print script with @pause. */
  function renderCallout() {
    const d = auto.draft;
    const waiting = (d.events.continuousprint_success || []).filter((a) => PAUSE.test(d.scripts[a.script] || ""));
    const el = $("auto-callout");
    el.classList.toggle("calm", !waiting.length);
    el.innerHTML = waiting.length
      ? `<strong>After each print the queue waits for a person.</strong> ${waiting.map((a) => `<em>${esc(a.script)}</em>`).join(", ")}
        on “after each successful print” contains the host command <code>@pause</code>: the queue stops until someone clears
        the bed and presses <em>Bed cleared – continue</em>. Attach bed-clearing G-code without <code>@pause</code> instead to print unattended.`
      : `<strong>Nobody waits after a print.</strong> No script on “after each successful print” contains <code>@pause</code>,
        so the next print starts by itself: the scripts there must clear the bed. Attach a script with <code>@pause</code> to wait for a person again.`;
  }

  function markDirty() {
    const dirty = autoDirty();
    $("auto-dirty").textContent = dirty ? "Unsaved changes." : "No unsaved changes.";
    $("auto-dirty").classList.toggle("warn-text", dirty);
    $("auto-revert").disabled = !dirty;
  }

  function renderTryOptions() {
    const d = auto.draft;
    const what = $("try-what");
    const current = what.value;
    const evs = Object.entries(d.events).filter(([, l]) => l.length)
      .map(([ev]) => `<option value="event:${esc(ev)}">${esc((EVENT_TEXT[ev] || [ev])[0])} (all its scripts)</option>`).join("");
    const scripts = Object.keys(d.scripts).map((n) => `<option value="script:${esc(n)}">${esc(n)}</option>`).join("");
    what.innerHTML = `${scripts ? `<optgroup label="One script">${scripts}</optgroup>` : ""}${evs ? `<optgroup label="An event">${evs}</optgroup>` : ""}`;
    if (Array.from(what.options).some((o) => o.value === current)) what.value = current;
    const pre = $("try-pre");
    const cur = pre.value;
    pre.innerHTML = options(Object.keys(d.preprocessors), cur, "none (always run)");
    updateTryPre();
  }

  function updateTryPre() {
    $("try-pre").disabled = !$("try-what").value.startsWith("script:");
  }
  $("try-what").addEventListener("change", updateTryPre);

  function attachmentOf(el) {
    const ev = el.closest("[data-event]").dataset.event;
    const li = el.closest("li[data-index]");
    return { ev, list: auto.draft.events[ev], i: li ? Number(li.dataset.index) : -1 };
  }

  $("auto-events").addEventListener("change", (e) => {
    const { list, i } = attachmentOf(e.target);
    if (i < 0) return;
    if (e.target.classList.contains("att-script")) list[i].script = e.target.value;
    if (e.target.classList.contains("att-pre")) list[i].preprocessor = e.target.value;
    renderAutomation();
  });
  $("auto-events").addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    const { list, i } = attachmentOf(b);
    if (b.classList.contains("att-remove")) list.splice(i, 1);
    else if (b.classList.contains("att-up") && i > 0) list.splice(i - 1, 0, ...list.splice(i, 1));
    else if (b.classList.contains("att-add")) list.push({ script: Object.keys(auto.draft.scripts)[0], preprocessor: "" });
    else return;
    renderAutomation();
  });

  function onItems(e) {
    const box = e.target.closest(".auto-item");
    if (!box) return;
    const table = box.dataset.kind === "script" ? auto.draft.scripts : auto.draft.preprocessors;
    const name = box.dataset.name;
    if (e.type === "input" && e.target.classList.contains("item-body")) {
      table[name] = e.target.value;
      markDirty();
      if (box.dataset.kind === "script") renderEventsOnly();
      const badge = box.querySelector(".item-head .badge");
      if (box.dataset.kind === "script" && Boolean(badge) !== PAUSE.test(e.target.value)) {
        if (badge) badge.remove(); else box.querySelector(".item-head .item-name").insertAdjacentHTML("afterend", PERSON_BADGE);
      }
    } else if (e.type === "change" && e.target.classList.contains("item-name")) {
      renameItem(box.dataset.kind, name, e.target);
    } else if (e.type === "click" && e.target.closest("button.item-delete")) {
      const b = e.target.closest("button.item-delete");
      if (!b.classList.contains("confirm")) {
        b.classList.add("confirm");
        b.textContent = usedBy(box.dataset.kind, name).length ? "Delete and detach?" : "Really delete?";
        setTimeout(() => { b.classList.remove("confirm"); b.textContent = "Delete"; }, 4000);
        return;
      }
      delete table[name];
      for (const list of Object.values(auto.draft.events)) {
        for (let i = list.length - 1; i >= 0; i--) {
          if (box.dataset.kind === "script" && list[i].script === name) list.splice(i, 1);
          else if (box.dataset.kind === "preprocessor" && list[i].preprocessor === name) list[i].preprocessor = "";
        }
      }
      renderAutomation();
    }
  }
  /** Rename a script or preprocessor in place (same position), and in every attachment. */
  function renameItem(kind, old, input) {
    const name = input.value.trim();
    const key = kind === "script" ? "scripts" : "preprocessors";
    if (name === old) { input.value = old; return; }
    if (!name || name in auto.draft[key]) {
      toast(name ? `There is already a ${kind} named “${name}”` : "A name cannot be empty", "error");
      input.value = old;
      return;
    }
    auto.draft[key] = Object.fromEntries(Object.entries(auto.draft[key]).map(([k, v]) => [k === old ? name : k, v]));
    for (const list of Object.values(auto.draft.events)) {
      for (const a of list) {
        if (kind === "script" && a.script === old) a.script = name;
        if (kind === "preprocessor" && a.preprocessor === old) a.preprocessor = name;
      }
    }
    renderAutomation();
  }

  for (const id of ["auto-scripts", "auto-preprocessors"]) {
    $(id).addEventListener("keydown", (e) => { if (e.key === "Enter" && e.target.classList.contains("item-name")) { e.preventDefault(); e.target.blur(); } });
    for (const type of ["input", "change", "click"]) $(id).addEventListener(type, onItems);
  }

  /** After a script's text changed: the events' "waits for a person" badges, without touching the text areas. */
  function renderEventsOnly() {
    const d = auto.draft;
    document.querySelectorAll("#auto-events li[data-index]").forEach((li) => {
      const { list, i } = attachmentOf(li);
      const waits = PAUSE.test(d.scripts[list[i].script] || "");
      const badge = li.querySelector(".badge");
      if (waits && !badge) li.querySelector(".att-if").insertAdjacentHTML("afterend", PERSON_BADGE);
      if (!waits && badge) badge.remove();
    });
    renderCallout();
  }

  function addItem(kind) {
    const input = $(kind === "script" ? "new-script-name" : "new-pre-name");
    const name = input.value.trim();
    const table = kind === "script" ? auto.draft.scripts : auto.draft.preprocessors;
    if (!name) { input.focus(); return; }
    if (name in table) { toast(`There is already a ${kind} named “${name}”`, "error"); return; }
    table[name] = kind === "script" ? "; G-code\n" : "# the last value decides: true runs the script\nTrue\n";
    input.value = "";
    renderAutomation();
    const box = document.querySelector(`.auto-item[data-kind="${kind}"][data-name="${CSS.escape(name)}"] textarea`);
    if (box) box.focus();
  }
  $("new-script").addEventListener("click", () => addItem("script"));
  $("new-pre").addEventListener("click", () => addItem("preprocessor"));
  $("new-script-name").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); addItem("script"); } });
  $("new-pre-name").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); addItem("preprocessor"); } });

  window.addEventListener("beforeunload", (e) => { if (autoDirty()) e.preventDefault(); });

  $("auto-revert").addEventListener("click", () => {
    auto.draft = clone(auto.saved);
    $("auto-error").hidden = true;
    renderAutomation();
  });

  $("auto-save").addEventListener("click", () => saving("auto", async () => {
    const sent = clone(auto.draft);
    await api("POST", `${CP}/automation/edit`, { form: { json: JSON.stringify(sent) } });
    auto.saved = await api("GET", `${CP}/automation/get`).catch(() => sent);
    if (JSON.stringify(auto.draft) === JSON.stringify(sent)) { auto.draft = clone(auto.saved); renderAutomation(); }
    else markDirty(); // edited while saving: keep those edits
    toast("Scripts and events saved");
  }));

  $("try-run").addEventListener("click", async () => {
    const d = auto.draft;
    const err = $("try-error");
    err.hidden = true;
    let symtable;
    try {
      symtable = JSON.parse($("try-symtable").value || "{}");
      if (!symtable || typeof symtable !== "object" || Array.isArray(symtable)) throw new Error("it must be a JSON object");
    } catch (e) {
      err.textContent = `Symbols: ${e.message}`;
      err.hidden = false;
      return;
    }
    const what = $("try-what").value;
    let bodies = [];
    if (what.startsWith("script:")) {
      const pre = $("try-pre").value;
      bodies = [[d.scripts[what.slice(7)] ?? "", pre ? d.preprocessors[pre] ?? "" : ""]];
    } else if (what.startsWith("event:")) {
      bodies = (d.events[what.slice(6)] || []).map((a) => [d.scripts[a.script] ?? "", a.preprocessor ? d.preprocessors[a.preprocessor] ?? "" : ""]);
    }
    const button = $("try-run");
    button.disabled = true;
    try {
      const out = await api("POST", `${CP}/automation/simulate`,
        { form: { symtable: JSON.stringify(symtable), automation: JSON.stringify(bodies) } });
      $("try-gcode").textContent = out.gcode || "(nothing would be sent)";
      $("try-stdout").textContent = out.stdout || "";
      $("try-stderr").textContent = out.stderr || "";
      $("try-stdout").closest("div").hidden = !out.stdout;
      $("try-stderr").closest("div").hidden = !out.stderr;
      $("try-out").hidden = false;
    } catch (e) {
      err.textContent = `Could not try it: ${e.message}`;
      err.hidden = false;
    } finally {
      button.disabled = false;
    }
  });

  // --- settings area: driver ----------------------------------------------------------------

  async function loadDriver() {
    try {
      fillDriver(await api("GET", `${CP}/driver/get`));
    } catch (e) {
      $("driver-error").textContent = `Could not load: ${e.message}`;
      $("driver-error").hidden = false;
    }
  }

  function fillDriver(s) {
    $("drv-retries").value = s.max_retries;
    $("drv-cooldown").checked = Boolean(s.cooldown);
    $("drv-below").value = s.cooldown_below;
    $("drv-timeout").value = s.cooldown_timeout;
    $("drv-recheck").value = s.recheck_every;
    updateCooldownFields();
  }

  function updateCooldownFields() {
    const on = $("drv-cooldown").checked;
    for (const id of ["drv-below", "drv-timeout"]) $(id).closest("label").classList.toggle("off", !on);
  }
  $("drv-cooldown").addEventListener("change", updateCooldownFields);

  $("driver-form").addEventListener("submit", (e) => {
    e.preventDefault();
    saving("driver", async () => {
      const doc = {
        max_retries: parseInt($("drv-retries").value, 10),
        cooldown: $("drv-cooldown").checked,
        cooldown_below: Number($("drv-below").value),
        cooldown_timeout: Number($("drv-timeout").value),
        recheck_every: Number($("drv-recheck").value),
      };
      fillDriver(await api("POST", `${CP}/driver/edit`, { form: { json: JSON.stringify(doc) } }));
      toast("Driver settings saved");
    });
  });

  // --- settings area: queues ----------------------------------------------------------------

  const STRATEGIES = [["IN_ORDER", "In order"], ["LEAST_MANUAL", "Fewest manual changes"]];
  let queueSettings = [];

  async function loadQueueSettings() {
    try {
      queueSettings = await api("GET", `${CP}/queues/get`);
    } catch (e) {
      $("queues-error").textContent = `Could not load: ${e.message}`;
      $("queues-error").hidden = false;
      return;
    }
    $("queue-rows").innerHTML = queueSettings.map((q, i) => `<tr data-queue="${esc(q.name)}">
      <td><strong>${esc(q.name)}</strong></td>
      <td class="muted">${q.name === "local" ? "this printer only" : `LAN${q.addr ? ` · ${esc(q.addr)}` : ""}`}</td>
      <td><select class="queue-strategy" data-index="${i}" aria-label="Strategy of ${esc(q.name)}">
        ${STRATEGIES.map(([v, label]) => `<option value="${v}"${v === q.strategy ? " selected" : ""}>${label}</option>`).join("")}</select></td></tr>`).join("");
  }

  $("queues-form").addEventListener("submit", (e) => {
    e.preventDefault();
    saving("queues", async () => {
      // the list and its order as queues/get gave them; only the strategy changes (joined LAN
      // queues need no secret again)
      const doc = queueSettings.map((q, i) => {
        const sel = $("queue-rows").querySelector(`select[data-index="${i}"]`);
        const out = { name: q.name, strategy: sel ? sel.value : q.strategy };
        if (q.addr != null) out.addr = q.addr;
        return out;
      });
      await api("POST", `${CP}/queues/edit`, { form: { json: JSON.stringify(doc) } });
      await loadQueueSettings();
      refresh("state");
      toast("Queues saved");
    });
  });

  $("join-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = $("join-name").value.trim();
    saving("join", async () => {
      const current = await api("GET", `${CP}/queues/get`);
      if (current.some((q) => q.name === name)) throw new ApiError(400, `this node already has a queue named ${name}`);
      // the queues as they are (no secrets: already joined), then the new one with its secret
      const doc = current.map((q) => ({ name: q.name, strategy: q.strategy, ...(q.addr != null ? { addr: q.addr } : {}) }));
      doc.push({ name, strategy: $("join-strategy").value, secret: $("join-secret").value });
      await api("POST", `${CP}/queues/edit`, { form: { json: JSON.stringify(doc) } });
      $("join-form").reset();
      await loadQueueSettings();
      refresh("state", "peers");
      toast(`Joined the LAN queue ${name}`);
    }, "Not joined");
  });

  // --- start ------------------------------------------------------------------------------------

  function start() {
    $("node-host").textContent = location.host;
    document.title = `lanqueue · ${location.host}`;
    connectEvents();
  }

  takeKeyFromAddress();
  if (apiKey) start();
  else askKey("");
})();
