/* The LAN peers card: each LAN queue's members and every node discovery knows.
 */
import { $, esc, view } from "./core.js";
import { GONE } from "./driver.js";

export function peerList(raw) {
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

export function renderPeers() {
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
