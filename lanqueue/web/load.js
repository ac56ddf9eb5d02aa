/* Loaders of the node's data (state/get, history, the printer, peers), each followed by the
 * renders that depend on it. Registered in core's loader table by app.js.
 */
import { $, CP, api, view } from "./core.js";
import { renderActions, renderDriver } from "./driver.js";
import { renderHistory } from "./history.js";
import { renderNeeded } from "./materials.js";
import { renderPeers } from "./peers.js";
import { renderPrinter } from "./printer.js";
import { renderQueues } from "./queues.js";

export async function loadState() {
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

export async function loadHistory() {
  try {
    view.history = await api("GET", `${CP}/history/get`);
    renderHistory();
  } catch { /* shown by loadState */ }
}

export async function loadPrinter() {
  try {
    view.job = await api("GET", "/api/job");
  } catch { view.job = null; }
  try {
    view.printer = await api("GET", "/api/printer", { quiet: true });
  } catch { view.printer = null; }
  renderPrinter();
  renderActions();
}

export async function loadPeers() {
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
