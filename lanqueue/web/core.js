/* lanqueue web page, the shared core: the page's data, small helpers, talking to the node and
 * the coalesced loading loop.
 *
 * Plain JavaScript modules, no build step, no outside requests. Data comes from the node's HTTP
 * API (the Continuous Print routes and OctoPrint's /api/job and /api/printer); live updates
 * arrive as server-sent events from /lanqueue/events (live.js), each naming what changed, and
 * the page re-fetches just that (one request of each kind in flight at a time; changes arriving
 * meanwhile are folded into one more round). This module imports nothing, so every other module
 * can use it from its first line whatever order the browser evaluates them in.
 */
export const CP = "/plugin/continuousprint";
export const KEY_STORE = "lanqueue.apikey";
export const $ = (id) => document.getElementById(id);

export const view = {
  state: null,        // state/get
  printer: null,      // /api/printer (null when not operational)
  job: null,          // /api/job
  history: [],        // history/get
  nodePeers: null,    // /lanqueue/peers, when the node has that route
  peersRoute: true,   // false once /lanqueue/peers answered 404
  materials: [],      // materials/get: the material loaded in each tool (null/"" = none)
  farm: null,         // /lanqueue/farm: every printer of the shared LAN queues, the timelines
};

export const session = { apiKey: null };  // the node's API key, once known

// --- small helpers ------------------------------------------------------------------------

const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ESC[c]);
export const keyOf = (queue, id) => JSON.stringify([queue, String(id)]);

export function toast(message, kind = "info") {
  const el = document.createElement("div");
  el.className = `toast ${kind}`;
  el.textContent = message;
  $("toasts").append(el);
  setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
}

export function duration(seconds) {
  if (seconds == null || !isFinite(seconds)) return "";
  seconds = Math.max(0, Math.round(seconds));
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  return h ? `${h}h ${m}m` : m ? `${m}m ${s}s` : `${s}s`;
}

export function clock(epoch) {
  if (!epoch) return "";
  const d = new Date(epoch * 1000);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}


export function askKey(message) {
  const dialog = $("key-dialog");
  $("key-error").hidden = !message;
  $("key-error").textContent = message || "";
  $("key-input").value = "";
  if (!dialog.open) dialog.showModal();
  $("key-input").focus();
}

// --- talking to the node -----------------------------------------------------------------

export async function api(method, path, { form, json, body, quiet } = {}) {
  const headers = { "X-Api-Key": session.apiKey || "" };
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
export async function act(what, fn, { success } = {}) {
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

export const cp = (path, form) => api("POST", `${CP}/${path}`, { form });

// --- loading, coalesced -------------------------------------------------------------------

export const dirty = new Set();
let loading = false;

/** kind -> async loader; each module registers its own (core imports nothing of the page, so
 * every module may use it while the others are still being evaluated). */
export const loaders = new Map();

export function refresh(...kinds) {
  kinds.forEach((k) => dirty.add(k));
  if (!loading) loadLoop();
}

async function loadLoop() {
  loading = true;
  try {
    while (dirty.size) {
      const kinds = new Set(dirty);
      dirty.clear();
      await Promise.allSettled(Array.from(kinds, (k) => (loaders.has(k) ? loaders.get(k)() : null)));
    }
  } finally {
    loading = false;
  }
}

/** Run a settings save: a refusal is shown next to the form (and nothing else changes). */
export async function saving(what, fn, refused = "Not saved") {
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
