/* The settings area: its tabs, the driver settings form and the queue settings (strategies,
 * joining a LAN queue).
 */
import { autoDirty, loadAutomation } from "./automation.js";
import { $, ApiError, CP, api, esc, refresh, saving, toast } from "./core.js";
import { materialsEdited, renderNeeded } from "./materials.js";

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

export function openSettings(tab) {
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
