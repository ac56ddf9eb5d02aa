/* The history card: the last runs, newest first, and clearing it (two clicks).
 */
import { $, CP, act, api, clock, duration, esc, view } from "./core.js";

export function renderHistory() {
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
