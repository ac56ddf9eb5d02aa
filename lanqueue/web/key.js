/* The API key: taken from ?apikey= once (then dropped from the address), kept in the browser,
 * asked for by a dialog when missing or refused.
 */
import { start } from "./app.js";
import { $, CP, KEY_STORE, askKey, session } from "./core.js";

export function takeKeyFromAddress() {
  const url = new URL(location.href);
  const given = url.searchParams.get("apikey");
  if (given) {
    localStorage.setItem(KEY_STORE, given);
    url.searchParams.delete("apikey");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  session.apiKey = localStorage.getItem(KEY_STORE);
}

$("key-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const candidate = $("key-input").value.trim();
  if (!candidate) return;
  const res = await fetch(`${CP}/state/get`, { headers: { "X-Api-Key": candidate } }).catch(() => null);
  if (!res || !res.ok) {
    $("key-error").hidden = false;
    $("key-error").textContent = res && res.status === 403 ? "That key was refused." : "The node did not answer.";
    return;
  }
  session.apiKey = candidate;
  localStorage.setItem(KEY_STORE, candidate);
  $("key-dialog").close();
  start();
});
$("key-dialog").addEventListener("cancel", (e) => { if (!session.apiKey) e.preventDefault(); });
$("change-key").addEventListener("click", () => askKey(""));
