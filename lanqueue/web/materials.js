/* Loaded materials: the card, the settings form, and the rule the driver uses to decide whether
 * a set can print here (shown as warnings on the queue rows).
 */
import { $, CP, api, esc, refresh, saving, toast, view } from "./core.js";
import { renderQueues } from "./queues.js";
import { openSettings } from "./settings.js";

const HEX = /^#?([0-9a-f]{3}|[0-9a-f]{6})$/i;

/** `PLA_red_#ff0000` -> {type: "PLA", colour: "red", hex: "#ff0000"}; missing parts are "". */
function materialParts(spec) {
  const parts = String(spec || "").split("_");
  const hex = parts.slice(2).join("_");
  return { type: parts[0] || "", colour: parts[1] || "", hex: HEX.test(hex) ? (hex.startsWith("#") ? hex : `#${hex}`) : "" };
}

export function materialChip(spec) {
  const m = materialParts(spec);
  const label = [m.type, m.colour].filter(Boolean).join(" ") || spec;
  const swatch = m.hex ? `<span class="swatch" data-color="${esc(m.hex)}" aria-hidden="true"></span>` : "";
  return `<span class="mat-chip" title="${esc(spec)}">${swatch}${esc(label)}</span>`;
}

/** Inline style attributes are refused by the page's CSP; colours are set through the CSSOM. */
export function paintSwatches(root) {
  root.querySelectorAll("[data-color]").forEach((el) => { el.style.backgroundColor = el.dataset.color; });
}

/** What a set lacks on this printer (the driver's own rule, model.set_printable). */
export function setNeeds(s) {
  const loaded = view.materials || [];
  const needs = [];
  (s.materials || []).forEach((wanted, tool) => {
    if (wanted && (loaded[tool] || null) !== wanted) needs.push({ tool, wanted });
  });
  return needs;
}

export function profileMismatch(s) {
  const profile = view.state && view.state.profile;
  return Array.isArray(s.profiles) && s.profiles.length && profile && !s.profiles.includes(profile);
}

export async function loadMaterials() {
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

export let materialsEdited = false;

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
export function renderNeeded() {
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
