/* This node's printer card: state, temperatures, current file and progress.
 */
import { $, act, api, duration, esc, refresh, view } from "./core.js";

export function renderPrinter() {
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
  renderPrinterActions(stateText);
}

/** Pause, resume and cancel of this node's print (through OctoPrint's /api/job). */
function renderPrinterActions(stateText) {
  const offered = stateText === "Printing" ? ["pause", "cancel"] : stateText === "Paused" ? ["resume", "cancel"]
    : stateText === "Pausing" ? ["cancel"] : [];
  const html = offered.map((a) => `<button type="button" class="small${a === "cancel" ? " danger" : ""}" data-job-action="${a}">${PRINT_ACTIONS[a]}</button>`).join("");
  const el = $("printer-actions");
  if (el.dataset.html !== html) { el.innerHTML = html; el.dataset.html = html; }
}

const PRINT_ACTIONS = { pause: "Pause", resume: "Resume", cancel: "Cancel" };
const PRINT_DONE = { pause: "Pausing the print", resume: "Resuming the print", cancel: "Cancelling the print" };

$("printer-actions").addEventListener("click", async (e) => {
  const button = e.target.closest("button[data-job-action]");
  if (!button) return;
  const a = button.dataset.jobAction;
  if (a === "cancel" && !button.classList.contains("confirm")) {  // a cancelled print cannot be brought back
    button.classList.add("confirm");
    button.textContent = "Really cancel?";
    setTimeout(() => { button.classList.remove("confirm"); button.textContent = PRINT_ACTIONS.cancel; }, 4000);
    return;
  }
  button.disabled = true;
  const json = a === "cancel" ? { command: "cancel" } : { command: "pause", action: a };
  await act(PRINT_ACTIONS[a], () => api("POST", "/api/job", { json }), { success: PRINT_DONE[a] });
  button.disabled = false;
  refresh("printer", "farm");
});
