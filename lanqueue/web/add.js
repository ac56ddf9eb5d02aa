/* Adding a job: upload the file with a progress bar, then queue it (set/add, or job/import for a .gjob).
 */
import { $, ApiError, act, api, cp, session } from "./core.js";

function upload(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const data = new FormData();
    data.append("file", file, file.name);
    xhr.open("POST", "/api/files/local");
    xhr.setRequestHeader("X-Api-Key", session.apiKey || "");
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(100 * e.loaded / e.total); };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, (body && body.error) || `upload failed (HTTP ${xhr.status})`));
    };
    xhr.onerror = () => reject(new ApiError(0, "the upload was interrupted"));
    xhr.send(data);
  });
}

$("add-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const file = $("add-file").files[0];
  if (!file) return;
  const bar = $("add-progress");
  const submit = $("add-submit");
  submit.disabled = true;
  bar.hidden = false;
  bar.value = 0;
  const queue = $("add-queue").value || "local";
  const ok = await act("Add job", async () => {
    const stored = await upload(file, (p) => { bar.value = p; });
    const path = stored.files.local.path;
    if (path.toLowerCase().endsWith(".gjob")) {
      return cp("job/import", { queue: "local", path });
    }
    return cp("set/add", {
      path, count: $("add-count").value || 1, jobName: $("add-name").value.trim() || undefined,
      jobDraft: $("add-draft").checked, queue,
    });
  }, { success: `Added ${file.name}` });
  submit.disabled = false;
  bar.hidden = true;
  if (ok) { $("add-form").reset(); $("add-queue").value = queue; }
});
