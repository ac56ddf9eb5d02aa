/* The page's input limits, from the node: every bound a person typing is held to (min, max,
 * maxlength) is the one the server enforces, declared once in lanqueue/api/fields.py and served
 * at /lanqueue/fields. Inputs are matched by id, or by class for those drawn per job or set;
 * those drawn later are caught by a MutationObserver. The limits in index.html and the
 * templates are only what an input has until the answer arrives.
 */
import { api } from "./core.js";

let limits = null;  // input id or class -> { min, max, maxlength }

function limit(el, attrs) {
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
}

function applyTo(root) {
  if (!limits || !root.querySelectorAll) return;
  for (const [key, attrs] of Object.entries(limits)) {
    if (root.id === key || root.classList?.contains(key)) limit(root, attrs);
    const byId = root === document ? document.getElementById(key) : null;
    if (byId) limit(byId, attrs);
    root.querySelectorAll(`#${CSS.escape(key)}, .${CSS.escape(key)}`).forEach((el) => limit(el, attrs));
  }
}

/** Fetch the limits once and hold every matching input to them, now and when drawn later. */
export async function applyLimits() {
  try {
    limits = (await api("GET", "/lanqueue/fields", { quiet: true })).inputs;
  } catch {
    return;  // an older node: the page keeps its own limits
  }
  applyTo(document);
  new MutationObserver((changes) => {
    for (const change of changes) change.addedNodes.forEach((n) => n.nodeType === 1 && applyTo(n));
  }).observe(document.body, { childList: true, subtree: true });
}
