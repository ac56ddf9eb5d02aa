/* lanqueue web page: watch and steer one node, its LAN queues and the farm.
 *
 * The entry module (index.html loads it with type="module"): it pulls in every part of the page,
 * registers what each kind of change reloads, and starts once the API key is known. The parts:
 * core.js (data, helpers, API calls, loading), key.js, live.js (server-sent events), driver.js
 * (queue manager and "needs action"), queues.js, add.js, printer.js, peers.js, history.js,
 * materials.js, settings.js, automation.js, farm.js (every printer of the shared LAN queues).
 */
import { $, askKey, loaders, session } from "./core.js";
import { takeKeyFromAddress } from "./key.js";
import { connectEvents } from "./live.js";
import { loadHistory, loadPeers, loadPrinter, loadState } from "./load.js";
import { loadMaterials } from "./materials.js";
import "./add.js";
import { loadFarm } from "./farm.js";
import { applyLimits } from "./limits.js";

loaders.set("state", loadState);
loaders.set("history", loadHistory);
loaders.set("printer", loadPrinter);
loaders.set("peers", loadPeers);
loaders.set("materials", loadMaterials);
loaders.set("farm", loadFarm);

export function start() {
  $("node-host").textContent = location.host;
  document.title = `lanqueue · ${location.host}`;
  applyLimits();  // the inputs' bounds are the server's (api/fields.py)
  connectEvents();
}

takeKeyFromAddress();
if (session.apiKey) start();
else askKey("");
