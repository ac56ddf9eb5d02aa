/* Settings, scripts and events: edit a draft of automation/get, save it whole, try a
 * preprocessor in the node's sandbox. Kept as a draft so a live update never overwrites typing.
 */
import { $, CP, api, esc, saving, toast } from "./core.js";

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
export const autoDirty = () => auto.draft !== null && JSON.stringify(auto.draft) !== JSON.stringify(auto.saved);

export async function loadAutomation() {
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

export function options(names, selected, none) {
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
