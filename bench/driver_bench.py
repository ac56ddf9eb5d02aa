"""Driver latency (issue 4), measured from outside the node.

A `lanqueue serve` process drives a tiny printer simulator in this process over
`--printer socket://127.0.0.1:<port>`. The simulator answers `ok` to every line at once (M115
with a firmware line, M105 with temperatures) and timestamps, on this process's monotonic clock,
the arrival of the first line of the print file (an M117 with a unique marker). Two figures:

- activation -> first line: from sending `POST set_active active=true` to the marker arriving
  (the node is inactive, a job is queued, the printer is idle);
- bed cleared -> first line: the node printed, ran its default success script (`@pause`: wait
  for a person) and waits; from sending `POST runner/continue` to the next print's marker.

Both include the HTTP request; the printer answers instantly, so what is measured is the node's
own work (driver, store, scripts, file open) plus loopback. Target: < 100 ms.

    python bench/driver_bench.py [--cycles 20] [--moves 200]

Prints a table and writes bench/RESULTS-driver.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from benchlib import command_of, pct, reply_to

HERE = Path(__file__).resolve().parent
KEY = "BENCHKEY0123456789"
CP = "/plugin/continuousprint"
MARK_FIRST = "BENCH-FIRST-LINE"
MARK_LAST = "BENCH-LAST-LINE"
TARGET_MS = 100.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrinterSim:
    """Answers `ok` to everything; records when marker lines arrive."""

    def __init__(self) -> None:
        self.first_line: asyncio.Queue[float] = asyncio.Queue()
        self.last_line = asyncio.Event()
        self.lines = 0
        self.connections = 0
        self.tasks: set[asyncio.Task] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        writer.write(b"start\n")
        try:
            while True:
                raw = await reader.readline()
                if not raw:
                    return
                now = time.monotonic()
                line = raw.decode("latin-1").strip()
                self.lines += 1
                if MARK_FIRST in line:
                    self.first_line.put_nowait(now)
                elif MARK_LAST in line:
                    self.last_line.set()
                code, _ = command_of(line)
                writer.write(reply_to(code))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            writer.close()
            if task is not None:
                self.tasks.discard(task)


def bench_gcode(moves: int) -> str:
    lines = [f"M117 {MARK_FIRST}", "G28", "G92 E0"]
    lines += [f"G1 X{10 + i % 50} Y{10 + (i * 7) % 50} E{0.05 * i:.2f} F3000" for i in range(moves)]
    lines.append(f"M117 {MARK_LAST}")
    return "\n".join(lines) + "\n"


class Api:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.s, self.url = session, url

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        async with self.s.request(method, self.url + path, headers={"X-Api-Key": KEY}, **kw) as r:
            text = await r.text()
            if r.status >= 400:
                raise RuntimeError(f"{method} {path}: {r.status} {text}")
            return json.loads(text) if text and r.content_type == "application/json" else text


async def wait_for(pred, timeout: float, what: str, step: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, RuntimeError):
            value = await pred()
            if value:
                return value
        await asyncio.sleep(step)
    raise RuntimeError(f"timed out waiting for {what}")


async def run(cycles: int, moves: int) -> dict[str, list[float]]:
    sim = PrinterSim()
    server = await asyncio.start_server(sim.handle, "127.0.0.1", 0)
    sim_port = server.sockets[0].getsockname()[1]
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="driver-bench-"))
    log = open(tmp / "node.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lanqueue.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(tmp / "data"), "--api-key", KEY, "--no-mdns", "--log-level", "WARNING",
         "--printer", f"socket://127.0.0.1:{sim_port}"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    results: dict[str, list[float]] = {"activation": [], "continue": []}
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, f"http://127.0.0.1:{port}")

            async def printer_state() -> str:
                return str((await api.call("GET", "/api/job"))["state"])  # type: ignore[index]

            async def state() -> dict:
                return await api.call("GET", CP + "/state/get")  # type: ignore[return-value]

            await wait_for(lambda: _ok(printer_state(), "Operational"), 30, "node and printer ready", 0.05)
            form = aiohttp.FormData()
            form.add_field("file", bench_gcode(moves).encode(), filename="bench.gcode")
            await api.call("POST", "/api/files/local", data=form)
            total = 2 * cycles + 2
            await api.call("POST", CP + "/set/add", data={"path": "bench.gcode", "count": str(total),
                                                           "jobDraft": "false", "jobName": "bench"})

            async def waiting_for_person() -> bool:
                s = await state()
                return s["statusType"] == "NEEDS_ACTION" and "person" in s["status"]

            async def one_print(start) -> float:
                """Send the start request, return seconds until the first line; wait for the print
                to end and the node to wait for a person again."""
                while not sim.first_line.empty():
                    sim.first_line.get_nowait()
                sim.last_line.clear()
                t0 = time.monotonic()
                await start()
                arrived = await asyncio.wait_for(sim.first_line.get(), 30)
                await asyncio.wait_for(sim.last_line.wait(), 60)
                await wait_for(waiting_for_person, 30, "the node to wait for a person")
                return arrived - t0

            # activation -> first line; the first cycle warms up (SQLite, file cache) and is dropped
            for i in range(cycles + 1):
                if i:
                    await api.call("POST", CP + "/set_active", data={"active": "false"})
                    with contextlib.suppress(RuntimeError):  # 409 if deactivating ended the wait
                        await api.call("POST", CP + "/runner/continue")  # the person cleared the bed
                    await wait_for(lambda: _inactive(state()), 10, "inactive")
                latency = await one_print(lambda: api.call("POST", CP + "/set_active", data={"active": "true"}))
                if i:
                    results["activation"].append(latency)
            # bed cleared -> first line of the next print
            for _ in range(cycles):
                latency = await one_print(lambda: api.call("POST", CP + "/runner/continue"))
                results["continue"].append(latency)
            await api.call("POST", CP + "/set_active", data={"active": "false"})
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for task in list(sim.tasks):
            task.cancel()
        await asyncio.gather(*sim.tasks, return_exceptions=True)
        server.close()
        await server.wait_closed()
        log.close()
    results["_lines"] = [float(sim.lines)]
    return results


async def _ok(aw, text: str) -> bool:
    return (await aw).startswith(text)


async def _inactive(aw) -> bool:
    return not (await aw)["active"]


def _previous(path: Path) -> dict[str, float]:
    """p50 of each figure from the previous results file, to report a ratio against it."""
    found: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 3 and "first line" in cells[0]:
                with contextlib.suppress(ValueError):
                    found[cells[0]] = float(cells[2])
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=20, help="measured prints per figure (default 20)")
    ap.add_argument("--moves", type=int, default=200, help="moves in the bench file (default 200)")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS-driver.md")
    args = ap.parse_args()
    started = time.monotonic()
    results = asyncio.run(run(args.cycles, args.moves))
    elapsed = time.monotonic() - started
    previous = _previous(args.out)
    rows = []
    for key, label in (("activation", "activation -> first line"), ("continue", "bed cleared -> first line")):
        ms = [v * 1000 for v in results[key]]
        p50, p95 = pct(ms, 0.5), pct(ms, 0.95)
        before = previous.get(label)
        vs = f"{p50 / before:.2f}" if before else "-"
        rows.append((label, len(ms), p50, p95, max(ms), statistics.mean(ms), p95 / TARGET_MS, vs))
    header = ("| figure | n | p50 ms | p95 ms | max ms | mean ms | p95 / target (100 ms) | p50 / previous run |\n"
              "|---|---|---|---|---|---|---|---|\n")
    body = "".join(f"| {r[0]} | {r[1]} | {r[2]:.1f} | {r[3]:.1f} | {r[4]:.1f} | {r[5]:.1f} | {r[6]:.2f} | {r[7]} |\n"
                   for r in rows)
    print(header + body)
    verdict = "met" if all(r[3] < TARGET_MS for r in rows) else "NOT met"
    md = (
        "# Driver latency (issue 4)\n\n"
        f"`python bench/driver_bench.py --cycles {args.cycles} --moves {args.moves}` on {platform.node()} "
        f"({platform.machine()}, Python {platform.python_version()}, {os.cpu_count()} CPUs), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {elapsed:.0f} s.\n\n"
        "Measured from outside the node: `lanqueue serve --printer socket://127.0.0.1:<port>` against a "
        "printer simulator in the bench process that answers `ok` at once; each figure runs from sending "
        "the HTTP request (`set_active` or `runner/continue`, default automation with its `@pause`) to the "
        "print file's first line (a unique M117) arriving at the simulator, on one monotonic clock. "
        "The first activation (cold caches) is dropped.\n\n"
        + header + body
        + f"\nTarget p95 < {TARGET_MS:.0f} ms: **{verdict}**. "
        f"Lines received by the simulator: {int(results['_lines'][0])}.\n"
    )
    args.out.write_text(md)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
