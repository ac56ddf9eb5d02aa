/* Live updates: one EventSource on /lanqueue/events; each event names the kinds of change and
 * the page reloads only those. Without the stream, a slow fallback poll keeps the page roughly right.
 */
import { $, refresh, session } from "./core.js";

export let events = null;

let fallbackTimer = null;

function setLive(state, text) {
  $("live").dataset.state = state;
  $("live-text").textContent = text;
}

export function connectEvents() {
  if (events) events.close();
  if (!window.EventSource) {
    setLive("off", "No live updates");
    refresh("state", "history", "printer", "peers", "materials", "farm");
    startFallback();
    return;
  }
  const source = new EventSource(`/lanqueue/events?apikey=${encodeURIComponent(session.apiKey)}`);
  events = source;
  // The first load waits for `hello` (the stream is subscribed, so nothing can slip between
  // the load and the first event); a reconnect loads everything again for what it missed.
  const firstLoad = setTimeout(() => refresh("state", "history", "printer", "peers", "materials", "farm"), 1500);
  source.addEventListener("hello", () => {
    clearTimeout(firstLoad);
    setLive("on", "Live");
    stopFallback();
    refresh("state", "history", "printer", "peers", "materials", "farm");
  });
  source.addEventListener("change", (e) => {
    let kinds = [];
    try { kinds = JSON.parse(e.data).kinds || []; } catch { /* ignore a malformed event */ }
    const want = new Set();
    for (const k of kinds) {
      if (k === "queues") { want.add("state"); want.add("history"); want.add("materials"); want.add("farm"); } // any stored change, materials too
      else if (k === "driver") { want.add("state"); want.add("history"); want.add("peers"); want.add("farm"); }
      else if (k === "printer") { want.add("printer"); want.add("farm"); }
      else if (k === "farm") want.add("farm");
      else if (k === "peers") { want.add("peers"); want.add("state"); want.add("farm"); }
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
  if (!fallbackTimer) fallbackTimer = setInterval(() => refresh("state", "printer", "history", "farm"), 10000);
}
function stopFallback() {
  if (fallbackTimer) { clearInterval(fallbackTimer); fallbackTimer = null; }
}
