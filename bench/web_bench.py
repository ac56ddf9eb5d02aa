"""The web page with a big queue: time to first render with 1,000 jobs, and live-update latency.

    python bench/web_bench.py                 # 10 and 1000 jobs, 5 page loads each, writes RESULTS-web.md
    python bench/web_bench.py --jobs 10,1000,3000 --loads 3 --no-write

A real `lanqueue serve` process (virtual printer) on loopback; jobs are created through the API
(`set/add`, one set each, as drafts so nothing prints); the page is loaded in headless Debian
chromium through the `playwright` package (no browser download). For each page load:

- first render: navigation start -> the page's `lanqueue-queues-rendered` mark (state fetched,
  every job row in the DOM); painted: its `lanqueue-queues-painted` mark (the task after the next
  animation frame, i.e. after style, layout and paint of those rows);
- state/get: the page's own fetch of the state object (resource timing) and its size;
- live update: another client adds a job; time until its row is on the page (the SSE event, the
  re-fetch of the whole state and the keyed re-render of the rows that changed);
- JS heap after the render (Chromium's performance.memory).

The 10-job run is the in-run baseline: figures are reported as-is and as a ratio to it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
CP = "/plugin/continuousprint"
KEY = "BENCHKEY0123456789"
CHROMIUM = os.environ.get("LANQUEUE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(data_dir.parent / "node.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lanqueue.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(data_dir), "--api-key", KEY, "--no-mdns", "--virtual-speed", "200"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        self.session = requests.Session()
        self.session.headers["X-Api-Key"] = KEY
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.session.get(self.url + "/api/version", timeout=1).ok:
                    return
            except requests.RequestException:
                time.sleep(0.05)
        raise RuntimeError("node did not start")

    def add_jobs(self, n: int, start: int = 0) -> float:
        t0 = time.perf_counter()
        for i in range(start, start + n):
            r = self.session.post(self.url + CP + "/set/add", timeout=10,
                                  data={"path": f"part_{i:05d}.gcode", "jobName": f"Job {i:05d}", "count": 1 + i % 3})
            r.raise_for_status()
        return time.perf_counter() - t0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def measure(page, url: str, node: Node, jobs: int, extra_name: str) -> dict[str, float]:
    page.goto(url + "/", wait_until="commit")
    # functions, not strings: the page's CSP forbids eval
    page.wait_for_function(
        "n => document.querySelectorAll('li.job').length >= n && "
        "performance.getEntriesByName('lanqueue-queues-painted').length > 0",
        arg=jobs, polling="raf", timeout=120_000,
    )
    figures = page.evaluate(
        """() => new Promise(resolve => requestAnimationFrame(() => {
            const painted = performance.getEntriesByName('lanqueue-queues-painted')[0].startTime;
            const mark = performance.getEntriesByName('lanqueue-queues-rendered')[0].startTime;
            const st = performance.getEntriesByType('resource').find(e => e.name.includes('/state/get'));
            resolve({render_ms: mark, painted_ms: painted,
                     state_fetch_ms: st ? st.responseEnd - st.requestStart : null,
                     state_end_ms: st ? st.responseEnd : null,
                     state_start_ms: st ? st.startTime : null,
                     state_bytes: st ? st.encodedBodySize : null,
                     heap_mb: performance.memory ? performance.memory.usedJSHeapSize / 1e6 : null});
        }))"""
    )
    page.wait_for_selector("#live[data-state=on]", timeout=10_000)
    t0 = time.perf_counter()
    node.session.post(node.url + CP + "/set/add", timeout=10, data={"path": "x.gcode", "jobName": extra_name}).raise_for_status()
    page.wait_for_function(
        "name => Array.from(document.querySelectorAll('input.job-name')).some(i => i.value === name)",
        arg=extra_name, polling="raf", timeout=30_000,
    )
    figures["live_update_ms"] = (time.perf_counter() - t0) * 1000
    return figures


def run(job_counts: list[int], loads: int) -> list[dict[str, object]]:
    from playwright.sync_api import sync_playwright

    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for n in job_counts:
            with tempfile.TemporaryDirectory() as tmp:
                node = Node(Path(tmp) / "data")
                try:
                    create_s = node.add_jobs(n)
                    rows: list[dict[str, float]] = []
                    context = browser.new_context(viewport={"width": 1280, "height": 900})
                    context.add_init_script(f"localStorage.setItem('lanqueue.apikey', '{KEY}')")
                    for i in range(loads + 1):  # the first load warms chromium's caches: not counted
                        page = context.new_page()
                        figures = measure(page, node.url, node, n + i, f"Live {i}")
                        page.close()
                        if i:
                            rows.append(figures)
                    context.close()
                finally:
                    node.stop()
            med = {k: statistics.median([r[k] for r in rows if r[k] is not None] or [float("nan")]) for k in rows[0]}
            results.append({"jobs": n, "create_s": create_s, **med,
                             "render_min": min(r["painted_ms"] for r in rows),
                             "render_max": max(r["painted_ms"] for r in rows)})
            print(f"{n:>6} jobs: first render {med['painted_ms']:.0f} ms (rows built {med['render_ms']:.0f} ms, "
                  f"{med['render_ms'] - med['state_end_ms']:.0f} ms after the state arrived), "
                  f"state/get {med['state_fetch_ms']:.0f} ms / {med['state_bytes'] / 1e3:.0f} kB, "
                  f"live update {med['live_update_ms']:.0f} ms, heap {med['heap_mb']:.1f} MB "
                  f"(jobs created in {create_s:.1f} s)", flush=True)
        browser.close()
    return results


def chromium_version() -> str:
    try:
        return subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=20).stdout.strip()
    except OSError:
        return "?"


def write_results(results: list[dict[str, object]], loads: int) -> None:
    base = results[0]
    lines = [
        "# Web page bench",
        "",
        f"`python bench/web_bench.py` on {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{chromium_version()} headless (playwright), {time.strftime('%Y-%m-%d')}.",
        "",
        f"One `lanqueue serve` process on loopback; jobs created with `set/add` (one set each). "
        f"Median of {loads} page loads after one warm-up load. First render = navigation start until every "
        "job row is in the DOM and the next frame is painted. Live update = another client adds a job until "
        "its row is on the page (SSE event + state re-fetch + keyed re-render).",
        "",
        f"| jobs | first render (ms) | min-max | ×{base['jobs']} jobs | state/get fetch (ms) | rows built after the state arrived (ms) | state size (kB) | live update (ms) | ×{base['jobs']} jobs | JS heap (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['jobs']} | {r['painted_ms']:.0f} | {r['render_min']:.0f}-{r['render_max']:.0f} | "
            f"{r['painted_ms'] / base['painted_ms']:.1f} | {r['state_fetch_ms']:.0f} | {r['render_ms'] - r['state_end_ms']:.0f} | "
            f"{r['state_bytes'] / 1e3:.0f} | "
            f"{r['live_update_ms']:.0f} | {r['live_update_ms'] / base['live_update_ms']:.1f} | {r['heap_mb']:.1f} |"
        )
    big = next((r for r in results if r["jobs"] == 1000), results[-1])
    lines += [
        "",
        f"Reading ({big['jobs']} jobs): of {big['painted_ms']:.0f} ms to the painted page, "
        f"{big['state_start_ms']:.0f} ms pass before the page asks for the state (the HTML, the script, and the "
        "event stream's `hello`: the first load waits for it so the state is fetched once, not twice), the node's "
        f"answer to `state/get` takes {big['state_fetch_ms']:.0f} ms ({big['state_bytes'] / 1e3:.0f} kB of JSON), "
        f"building the rows {big['render_ms'] - big['state_end_ms']:.0f} ms, and style, layout and paint "
        f"{big['painted_ms'] - big['render_ms']:.0f} ms (rows off screen skip layout and paint: "
        "`content-visibility: auto`). On a change the page re-fetches the "
        "whole state and reuses every row whose job did not change, so a live update costs the fetch plus the "
        "changed rows, not a full re-render; the node's `state/get` is the part that grows with the queue.",
        "",
        "The machine is shared with other work (2 cores): single loads vary by up to 2x (min-max column).",
        "",
    ]
    (ROOT / "bench" / "RESULTS-web.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", default="10,1000", help="comma-separated job counts (the first is the baseline)")
    parser.add_argument("--loads", type=int, default=5, help="measured page loads per job count")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write bench/RESULTS-web.md")
    args = parser.parse_args()
    results = run([int(x) for x in args.jobs.split(",")], args.loads)
    if not args.no_write:
        write_results(results, args.loads)


if __name__ == "__main__":
    main()
