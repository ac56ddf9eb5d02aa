"""LAN queue figures (issue 6) with real `lanqueue serve` processes on loopback.

(a) pickup: from sending `set/add` of a LAN job on node A to the first line of its file reaching
    the printer of node B, an idle printer on another node (target < 1 s); B's printer is a
    simulator in this process on `socket://`, which timestamps the file's unique M117 line. Also
    the gap between back-to-back copies of one LAN job on one printer (last line of copy k to
    first line of copy k+1).
(b) failover: a holder (virtual printer at speed 1, mid-print) is killed with SIGKILL; time until
    the job's first line reaches another idle node's printer, with a short TTL (`--ttl`, lock-delay
    = TTL). Expected at most TTL + lock-delay (+ up to one renewal period less, since the home counts
    from the last renewal).
(c) replication: N nodes (static full mesh), J jobs submitted on node 0; time until every node
    lists all J jobs, and the bytes that crossed loopback.
(d) CPU and memory per node (from /proc/<pid>/stat and /proc/<pid>/status) while idle and busy.

As root the whole bench re-runs itself in a private network namespace (`unshare --net`), so the
loopback byte counters of (c) hold this bench's traffic only; without root the byte figures are
left out. Everything is on loopback; nothing leaves the machine.

    python bench/lan_bench.py [--pickup-jobs 10] [--copies 10] [--kill-rounds 3] [--ttl 6]
                              [--nodes 10] [--jobs 1000] [--only a,b,c]
    python bench/lan_bench.py --scale 4,24 [--jobs 300] [--idle-window 15]

Prints the tables and writes bench/RESULTS-lan.md.

Scale mode (issue 14) runs (c) unchanged at each farm size in turn, in one run, and prints per
size: submissions/s, last submit -> all nodes have all, background bytes per node per second
(loopback bytes while idle with the jobs in the queue, less the bench's own requests, divided by
the nodes) and idle CPU per node; then each size's ratio to the first. It replaces the "Scale"
section of bench/RESULTS-lan.md and leaves the rest of the file as it was.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from benchlib import command_of, pct, reply_to

HERE = Path(__file__).resolve().parent
KEY = "BENCHKEY0123456789"
CP = "/plugin/continuousprint"
QUEUE = "bench"
NETNS_ENV = "LANQUEUE_BENCH_IN_NETNS"
CLK_TCK = os.sysconf("SC_CLK_TCK")
NO_WAIT = {"scripts": {"clear": "G28 X"}, "preprocessors": {},
           "events": {"continuousprint_success": [{"script": "clear", "preprocessor": ""}]}}

_next_port = 20000 + (os.getpid() % 2000) * 10


def next_port() -> int:
    """Ports in a private netns cannot collide with anyone; outside it, check that they are free."""
    import socket

    global _next_port
    while True:
        _next_port += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", _next_port))
            except OSError:
                continue
        return _next_port


def lo_tx_bytes() -> int | None:
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            return int(rest.split()[8])
    return None


# --- the printer simulator -------------------------------------------------------------------


class PrinterSim:
    """A printer on `socket://127.0.0.1:<port>` that answers `ok` at once and timestamps every
    `M117 MARK-...` line (the first and last line of each bench file)."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = []
        self.changed = asyncio.Event()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def wait_mark(self, mark: str, timeout: float, after: int = 0) -> float:
        deadline = time.monotonic() + timeout
        while True:
            for name, t in self.marks[after:]:
                if name == mark:
                    return t
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{mark} not printed within {timeout} s")
            self.changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        writer.write(b"start\n")
        try:
            while raw := await reader.readline():
                now = time.monotonic()
                line = raw.decode("latin-1").strip()
                code, body = command_of(line)
                if code == "M117" and "MARK-" in body:
                    self.marks.append((body.split("MARK-", 1)[1].strip(), now))
                    self.changed.set()
                writer.write(reply_to(code))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            writer.close()
            if task is not None:
                self.tasks.discard(task)


def bench_file(mark: str, moves: int, feed: int = 6000, length: float = 1.0, home: bool = True) -> bytes:
    lines = [f"M117 MARK-{mark}-FIRST", "G28" if home else "G92 X10 Y10 Z0", "G92 E0"]
    for i in range(moves):
        x = 10 + (i % 2) * length
        lines.append(f"G1 X{x:.1f} Y{10 + (i % 3)} E{0.01 * i:.2f} F{feed}")
    lines.append(f"M117 MARK-{mark}-LAST")
    return ("\n".join(lines) + "\n").encode()


# --- nodes -----------------------------------------------------------------------------------


@dataclass
class Node:
    name: str
    port: int
    data_dir: Path
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    session: aiohttp.ClientSession | None = None
    pythonpath: str | None = None  # run another source tree (a baseline) instead of the installed one
    client_bytes: int = 0  # request + response bytes this bench exchanged with the node

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir.parent / f"{self.name}.log", "ab")
        cmd = [sys.executable, "-m", "lanqueue.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--data-dir", str(self.data_dir), "--api-key", KEY, "--no-mdns", "--name", self.name,
               "--log-level", os.environ.get("LAN_BENCH_LOG_LEVEL", "WARNING"), *self.extra]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LANQUEUE_")}
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        # cwd outside any source tree: `-m` puts the cwd first on sys.path, before PYTHONPATH
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir,
                                     env={**env, "PYTHONUNBUFFERED": "1"})
        log.close()

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        assert self.session is not None
        async with self.session.request(method, self.url + path, headers={"X-Api-Key": KEY}, **kw) as r:
            body = await r.read()
            self.client_bytes += len(body) + sum(len(k) + len(v) + 4 for k, v in r.raw_headers) + 20
            req_body = kw.get("data")
            self.client_bytes += 200 + (len(req_body) if isinstance(req_body, (bytes, str)) else 0)
            if r.status >= 400:
                raise RuntimeError(f"{self.name} {method} {path}: {r.status} {body[:300]!r}")
            return json.loads(body) if body and r.content_type == "application/json" else body

    async def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.data_dir.parent / (self.name + '.log')}")
            with contextlib.suppress(aiohttp.ClientError, RuntimeError, asyncio.TimeoutError):
                await self.call("GET", "/api/version")
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    async def upload(self, name: str, data: bytes) -> None:
        form = aiohttp.FormData()
        form.add_field("file", data, filename=name)
        await self.call("POST", "/api/files/local", data=form)
        self.client_bytes += len(data)

    async def submit(self, path: str, count: int = 1, name: str | None = None) -> str:
        form = {"path": path, "queue": QUEUE, "jobDraft": "false", "count": str(count)}
        if name:
            form["jobName"] = name
        return str((await self.call("POST", CP + "/set/add", data=form))["job_id"])

    async def state(self) -> dict[str, Any]:
        return await self.call("GET", CP + "/state/get")

    async def printer_state(self) -> str:
        return str((await self.call("GET", "/api/job"))["state"])

    async def activate(self, active: bool = True) -> None:
        await self.call("POST", CP + "/set_active", data={"active": "true" if active else "false"})

    async def no_wait(self) -> None:
        await self.call("POST", CP + "/automation/edit", data={"json": json.dumps(NO_WAIT)})

    async def online_peers(self) -> int:
        peers = (await self.call("GET", "/lanqueue/peers"))["peers"]
        return sum(1 for p in peers if p.get("status") == "online")

    async def lan_jobs_count(self) -> int:
        """Jobs in the LAN queue, from /metrics (small answer, whatever the queue length)."""
        body = await self.call("GET", "/metrics")
        text = body.decode() if isinstance(body, bytes) else str(body)
        m = re.search(r'^lanqueue_queue_jobs\{queue="' + QUEUE + r'"\}\s+([0-9.e+]+)', text, re.M)
        return int(float(m.group(1))) if m else 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


async def cpu_window(nodes: list[Node], seconds: float) -> list[tuple[float, int]]:
    """(CPU % of one core, RSS MiB) per node over `seconds` of wall time."""
    t0 = time.monotonic()
    c0 = [cpu_seconds(n.pid) for n in nodes]
    await asyncio.sleep(seconds)
    wall = time.monotonic() - t0
    return [(100.0 * (cpu_seconds(n.pid) - c) / wall, memory_kib(n.pid)["VmRSS"]) for n, c in zip(nodes, c0)]


async def wait_for(pred: Callable[[], Awaitable[Any]], timeout: float, what: str, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = await pred()
            if value:
                return value
        except (aiohttp.ClientError, RuntimeError, asyncio.TimeoutError, KeyError) as e:
            last = e
        await asyncio.sleep(step)
    raise RuntimeError(f"timed out waiting for {what}" + (f" (last error: {last})" if last else ""))


class Cluster:
    """Nodes joined to one LAN queue with static peers to each other."""

    def __init__(self, root: Path, session: aiohttp.ClientSession, names: list[str],
                 extra: dict[str, list[str]] | None = None, common: list[str] | None = None,
                 pythonpath: str | None = None) -> None:
        secret = secrets.token_urlsafe(16)
        self.nodes = [Node(n, next_port(), root / n) for n in names]
        for n in self.nodes:
            n.session = session
            n.pythonpath = pythonpath
            n.extra = ["--lan", f"{QUEUE}={secret}", *(common or []), *((extra or {}).get(n.name, []))]
            for p in self.nodes:
                if p is not n:
                    n.extra += ["--peer", f"127.0.0.1:{p.port}"]

    def __getitem__(self, i: int) -> Node:
        return self.nodes[i]

    async def start(self) -> None:
        for n in self.nodes:
            n.start()
        await asyncio.gather(*(n.wait_ready() for n in self.nodes))
        want = len(self.nodes) - 1

        async def mesh() -> bool:
            counts = await asyncio.gather(*(n.online_peers() for n in self.nodes))
            return all(c >= want for c in counts)

        await wait_for(mesh, 60, "full mesh of peers", 0.2)

    def stop(self) -> None:
        for n in self.nodes:
            if n.proc and n.proc.poll() is None:
                n.proc.terminate()
        for n in self.nodes:
            n.stop()


async def idle_driver(node: Node) -> bool:
    return (await node.state())["status"].startswith("Idle")


# --- (a) pickup ------------------------------------------------------------------------------


async def bench_pickup(root: Path, session: aiohttp.ClientSession, jobs: int, copies: int,
                       pythonpath: str | None = None) -> dict[str, Any]:
    sim = PrinterSim()
    await sim.start()
    cluster = Cluster(root / ("a-base" if pythonpath else "a"), session, ["a-home", "a-idle"],
                      extra={"a-idle": ["--printer", f"socket://127.0.0.1:{sim.port}"]}, pythonpath=pythonpath)
    out: dict[str, Any] = {}
    try:
        await cluster.start()
        home, idle = cluster[0], cluster[1]
        await wait_for(lambda: _starts(idle.printer_state(), "Operational"), 30, "simulated printer")
        await idle.no_wait()
        await idle.activate()
        await wait_for(lambda: idle_driver(idle), 10, "idle driver")
        latencies = []
        for i in range(jobs):
            name = f"pickup{i}.gcode"
            await home.upload(name, bench_file(f"A{i}", 40))
            await asyncio.sleep(0.3)  # the idle node has gone back to IDLE; uploads replicate nothing
            seen = len(sim.marks)
            t0 = time.monotonic()
            await home.submit(name)
            first = await sim.wait_mark(f"A{i}-FIRST", 30, seen)
            latencies.append(first - t0)
            await sim.wait_mark(f"A{i}-LAST", 30, seen)
            await wait_for(lambda: idle_driver(idle), 30, "idle again")
        out["pickup"] = latencies
        # back-to-back copies of one job on one printer
        await home.upload("copies.gcode", bench_file("C", 40))
        await asyncio.sleep(0.3)
        seen = len(sim.marks)
        t0 = time.monotonic()
        await home.submit("copies.gcode", count=copies)
        gaps = []
        last = None
        for _ in range(copies):
            first = await sim.wait_mark("C-FIRST", 60, seen)
            if last is not None:
                gaps.append(first - last)
            seen = next(i for i, (n, t) in enumerate(sim.marks) if n == "C-FIRST" and t == first) + 1
            last = await sim.wait_mark("C-LAST", 60, seen)
        out["copies_total"] = last - t0 if last is not None else float("nan")
        out["copy_gaps"] = gaps
    finally:
        cluster.stop()
        await sim.close()
    return out


async def _starts(aw: Awaitable[str], prefix: str) -> bool:
    return (await aw).startswith(prefix)


# --- (b) failover ----------------------------------------------------------------------------


async def bench_failover(root: Path, session: aiohttp.ClientSession, rounds: int, ttl: float) -> dict[str, Any]:
    results: list[float] = []
    busy: list[tuple[float, int]] = []
    lines_per_s = float("nan")
    for r in range(rounds):
        sim = PrinterSim()
        await sim.start()
        cluster = Cluster(root / f"b{r}", session, ["b-home", "b-victim", "b-survivor"],
                          common=["--lease-ttl", str(ttl)],
                          extra={"b-victim": ["--virtual-speed", "1"],
                                 "b-survivor": ["--printer", f"socket://127.0.0.1:{sim.port}"]})
        try:
            await cluster.start()
            home, victim, survivor = cluster[0], cluster[1], cluster[2]
            await wait_for(lambda: _starts(survivor.printer_state(), "Operational"), 30, "simulated printer")
            # 1 mm moves at 50 mm/s: about 50 lines a second for a minute at speed 1, so the victim
            # is mid-print when it is killed and its CPU figure is that of a realistic line rate
            long_file = bench_file(f"B{r}", 3000, feed=3000, length=1.0, home=False)  # G28 takes 8 s
            await home.upload("long.gcode", long_file)
            await victim.activate()
            job = await home.submit("long.gcode")
            await wait_for(lambda: _starts(victim.printer_state(), "Printing"), 30, "victim printing")
            await survivor.no_wait()
            await survivor.activate()
            await wait_for(lambda: idle_driver(survivor), 15, "survivor idle")
            if r == 0:  # (d): a node streaming a print to its virtual printer at speed 1
                pos0 = (await victim.call("GET", "/api/job"))["progress"]["filepos"] or 0
                t_pos = time.monotonic()
                busy = await cpu_window([victim], 5.0)
                pos1 = (await victim.call("GET", "/api/job"))["progress"]["filepos"] or 0
                line_len = len(long_file) / long_file.count(b"\n")
                lines_per_s = (pos1 - pos0) / line_len / (time.monotonic() - t_pos)
            await asyncio.sleep(0.5)
            t_kill = time.monotonic()
            victim.kill()
            first = await sim.wait_mark(f"B{r}-FIRST", 3 * ttl + 30)
            results.append(first - t_kill)
            queue = next(q for q in (await home.state())["queues"] if q["name"] == QUEUE)
            assert any(j["id"] == job and j["acquired"] for j in queue["jobs"]), "job not re-acquired"
        finally:
            cluster.stop()
            await sim.close()
    return {"failover": results, "busy_print": busy, "lines_per_s": lines_per_s}


# --- (c) replication and (d) resources -------------------------------------------------------


async def bench_replication(root: Path, session: aiohttp.ClientSession, n_nodes: int, jobs: int,
                            concurrency: int, idle_window: float) -> dict[str, Any]:
    cluster = Cluster(root / "c", session, [f"c{i}" for i in range(n_nodes)])
    out: dict[str, Any] = {}
    try:
        t_start = time.monotonic()
        await cluster.start()
        out["mesh_s"] = time.monotonic() - t_start
        nodes = cluster.nodes
        await asyncio.sleep(2.0)
        # idle, no jobs: CPU, RSS and background bytes (heartbeats, anti-entropy)
        b0 = lo_tx_bytes()
        c0 = sum(n.client_bytes for n in nodes)
        out["idle_empty"] = await cpu_window(nodes, idle_window)
        b1 = lo_tx_bytes()
        if b0 is not None and b1 is not None:
            out["idle_bytes_per_s"] = (b1 - b0 - (sum(n.client_bytes for n in nodes) - c0)) / idle_window
        submitter = nodes[0]
        await submitter.upload("rep.gcode", bench_file("R", 20))
        c_before = sum(n.client_bytes for n in nodes)
        b_before = lo_tx_bytes()
        cpu_before = [cpu_seconds(n.pid) for n in nodes]
        t0 = time.monotonic()
        counter = iter(range(jobs))

        async def worker() -> None:
            for i in counter:
                await submitter.submit("rep.gcode", name=f"rep{i}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        t_submitted = time.monotonic()

        async def converged() -> bool:
            counts = await asyncio.gather(*(n.lan_jobs_count() for n in nodes))
            return all(c >= jobs for c in counts)

        await wait_for(converged, 300, f"{jobs} jobs on every node", 0.25)
        t_conv = time.monotonic()
        b_after = lo_tx_bytes()
        wall = t_conv - t0
        out["busy_ingest"] = [(100.0 * (cpu_seconds(n.pid) - c) / wall, memory_kib(n.pid)["VmRSS"])
                              for n, c in zip(nodes, cpu_before)]
        out["submit_s"] = t_submitted - t0
        out["converge_s"] = t_conv - t0
        out["converge_after_last_submit_s"] = t_conv - t_submitted
        client = sum(n.client_bytes for n in nodes) - c_before
        out["client_bytes"] = client
        if b_before is not None and b_after is not None:
            out["lo_bytes"] = b_after - b_before
            background = out.get("idle_bytes_per_s", 0.0) * wall
            out["peer_bytes"] = b_after - b_before - client
            out["replication_bytes"] = b_after - b_before - client - background
        await asyncio.sleep(2.0)
        b2 = lo_tx_bytes()
        c2 = sum(n.client_bytes for n in nodes)
        out["idle_full"] = await cpu_window(nodes, idle_window)
        b3 = lo_tx_bytes()
        if b2 is not None and b3 is not None:
            out["idle_full_bytes_per_s"] = (b3 - b2 - (sum(n.client_bytes for n in nodes) - c2)) / idle_window
        out["hwm_mib"] = [memory_kib(n.pid)["VmHWM"] / 1024 for n in nodes]
    finally:
        cluster.stop()
    return out


# --- report ----------------------------------------------------------------------------------


def _ms(v: float) -> str:
    return f"{v * 1000:.0f}"


def _previous(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 2 and cells[0] and not cells[0].startswith("-"):
                found.setdefault(cells[0], cells[1])
    return found


def _ratio(now: float, before: str | None) -> str:
    if not before:
        return "-"
    try:
        b = float(before.split()[0])
    except ValueError:
        return "-"
    return f"{now / b:.2f}" if b else "-"


def report(args: argparse.Namespace, res: dict[str, Any], elapsed: float, netns: bool) -> str:
    prev = _previous(args.out)
    rows: list[tuple[str, float, str, str, float | None]] = []  # figure, value, unit, target text, target

    def add(name: str, value: float, unit: str, target: str = "", bound: float | None = None) -> None:
        rows.append((name, value, unit, target, bound))

    a = res.get("a")
    if a:
        p = a["pickup"]
        add("(a) submit on A -> first line on B, p50", pct(p, 0.5) * 1000, "ms", "< 1000 ms", 1000.0)
        add("(a) submit on A -> first line on B, p95", pct(p, 0.95) * 1000, "ms", "< 1000 ms", 1000.0)
        add("(a) submit on A -> first line on B, max", max(p) * 1000, "ms", "")
        g = a["copy_gaps"]
        if g:
            add("(a) gap between copies of one LAN job, p50", pct(g, 0.5) * 1000, "ms", "")
            add("(a) gap between copies of one LAN job, p95", pct(g, 0.95) * 1000, "ms", "")
    b = res.get("b")
    if b:
        f = b["failover"]
        expected = args.ttl * 2
        add(f"(b) SIGKILL of holder -> printed elsewhere, TTL {args.ttl:g} s, median", statistics.median(f), "s",
            f"<= TTL + lock-delay = {expected:g} s", expected)
        add(f"(b) SIGKILL of holder -> printed elsewhere, TTL {args.ttl:g} s, max", max(f), "s",
            f"<= {expected:g} s", expected)
    c = res.get("c")
    if c:
        add(f"(c) {args.jobs} jobs to {args.nodes} nodes: submit time", c["submit_s"], "s", "")
        add(f"(c) {args.jobs} jobs to {args.nodes} nodes: first submit -> all nodes have all", c["converge_s"], "s", "")
        add(f"(c) {args.jobs} jobs to {args.nodes} nodes: last submit -> all nodes have all",
            c["converge_after_last_submit_s"] * 1000, "ms", "")
        add(f"(c) {args.jobs} jobs to {args.nodes} nodes: submissions per second", args.jobs / c["submit_s"], "1/s", "")
        if "peer_bytes" in c:
            add("(c) loopback bytes during replication minus the bench's own HTTP", c["peer_bytes"] / 1e6, "MB", "")
            per = c["replication_bytes"] / (args.jobs * (args.nodes - 1))
            add("(c) bytes per job per receiving peer (minus background)", per, "B", "")
            add(f"(c) background traffic, {args.nodes} nodes, no jobs", c["idle_bytes_per_s"] / 1e3, "kB/s", "")
            add(f"(c) background traffic, {args.nodes} nodes, {args.jobs} jobs", c["idle_full_bytes_per_s"] / 1e3, "kB/s", "")
    lines = ["| figure | value | unit | target / expected | value / target | ratio to previous run |",
             "|---|---|---|---|---|---|"]
    for name, value, unit, target, bound in rows:
        of_target = f"{value / bound:.3f}" if bound else "-"
        lines.append(f"| {name} | {value:.1f} | {unit} | {target} | {of_target} | {_ratio(value, prev.get(name))} |")
    table = "\n".join(lines) + "\n"

    base = res.get("a_base")
    if a and base:
        label = args.baseline_label or f"`{args.baseline_src}`"
        lines = ["", f"Same run, nodes from the baseline tree {label} (a peer measured in the same run):", "",
                 "| figure | this tree | baseline | this / baseline |", "|---|---|---|---|"]
        for label, key, q in (("(a) submit -> first line, p50 ms", "pickup", 0.5),
                              ("(a) submit -> first line, p95 ms", "pickup", 0.95),
                              ("(a) gap between copies, p50 ms", "copy_gaps", 0.5),
                              ("(a) gap between copies, p95 ms", "copy_gaps", 0.95)):
            mine, theirs = pct(a[key], q) * 1000, pct(base[key], q) * 1000
            lines.append(f"| {label} | {mine:.1f} | {theirs:.1f} | {mine / theirs:.3f} |")
        table += "\n".join(lines) + "\n"

    res_lines = ["| node(s) | while | CPU % of one core (mean / max) | RSS MiB (mean / max) |", "|---|---|---|---|"]

    def res_row(who: str, what: str, samples: list[tuple[float, int]]) -> None:
        if samples:
            cpu = [s[0] for s in samples]
            rss = [s[1] / 1024 for s in samples]
            res_lines.append(f"| {who} | {what} | {statistics.mean(cpu):.1f} / {max(cpu):.1f} | "
                             f"{statistics.mean(rss):.1f} / {max(rss):.1f} |")

    if c:
        res_row(f"{args.nodes} nodes", f"idle, empty queue ({args.idle_window:g} s)", c["idle_empty"])
        res_row("submitting home (c0)", f"busy: taking {args.jobs} submissions and pushing them", c["busy_ingest"][:1])
        res_row(f"{args.nodes - 1} receiving nodes", "busy: receiving replication", c["busy_ingest"][1:])
        res_row(f"{args.nodes} nodes", f"idle, {args.jobs} jobs in the LAN queue ({args.idle_window:g} s)", c["idle_full"])
    if b and b.get("busy_print"):
        res_row("holder", f"busy: printing {b['lines_per_s']:.0f} lines/s (1-2 mm moves at 50 mm/s) on the built-in "
                "virtual printer at speed 1 (5 s)", b["busy_print"])
    resources = "\n".join(res_lines) + "\n"

    details = []
    if a:
        details.append("(a) pickup latencies, ms: " + ", ".join(_ms(v) for v in a["pickup"]))
        details.append(f"(a) {args.copies} copies of one job printed in {a['copies_total']:.2f} s; gaps, ms: "
                       + ", ".join(_ms(v) for v in a["copy_gaps"]))
    if b:
        details.append("(b) failover times, s: " + ", ".join(f"{v:.2f}" for v in b["failover"]))
    if c:
        details.append(f"(c) mesh of {args.nodes} nodes formed {c['mesh_s']:.1f} s after start; bench's own HTTP "
                       f"during replication {c.get('client_bytes', 0) / 1e6:.2f} MB; loopback total "
                       f"{c.get('lo_bytes', 0) / 1e6:.2f} MB; peak RSS (VmHWM) max {max(c['hwm_mib']):.1f} MiB")
    how = (
        f"`python bench/lan_bench.py --pickup-jobs {args.pickup_jobs} --copies {args.copies} --kill-rounds "
        f"{args.kill_rounds} --ttl {args.ttl:g} --nodes {args.nodes} --jobs {args.jobs} --concurrency "
        f"{args.concurrency}"
        + (f" --baseline-src {args.baseline_src}" if args.baseline_src else "")
        + f"` on {platform.node()} ({platform.machine()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {elapsed:.0f} s"
        + (", in a private network namespace." if netns else ", on the shared loopback (no byte figures).")
    )
    notes = f"""
How it is measured:
- Every node is a `lanqueue serve` process on 127.0.0.1 with `--no-mdns` and static peers to every
  other node. Times are taken in the bench process on one monotonic clock, from sending the HTTP
  request (or the SIGKILL) to the file's first line (a unique M117) arriving at a printer simulator
  that the receiving node drives over `socket://` and that answers `ok` at once.
- (a) node B is active and idle (its driver says Idle) when the job is submitted on A; the time includes
  replication of the record, B's acquire round trip to A, B fetching the file from A (sha256 checked)
  and starting the print.
- (b) the holder prints on the built-in virtual printer at speed 1 and is killed mid-print while the
  survivor is active and idle. The home frees the lease when it expires (TTL after the last grant or
  renewal, renewals every TTL/3) and grants again after the lock-delay (default: one TTL), so a kill
  costs between TTL x 2/3 + lock-delay and TTL + lock-delay. With the defaults (TTL 60 s, lock-delay
  60 s) that is 100-120 s; L2 promises at most TTL + lock-delay = 120 s.
- (c) all {args.jobs} jobs are submitted on node c0 ({args.concurrency} requests at a time), all with the
  same small file (each peer prefetches it once). "All nodes have all" polls each node's `/metrics`
  (`lanqueue_queue_jobs`) every 0.25 s (so "last submit -> all" has 250 ms resolution). Bytes are the IP bytes sent on the loopback device of a private
  network namespace that holds only this bench (`/proc/net/dev`, tx of `lo`), minus the bench's own
  HTTP requests and answers as counted by its client (bodies plus headers; their TCP/IP headers and
  ACKs are not subtracted, so the peer figures are slightly high). "Minus background" also subtracts
  the heartbeat/anti-entropy rate measured while idle. Anti-entropy runs every min(30 s, TTL/2), so an
  idle window shorter than 30 s may or may not contain a round; the default window is 30 s.
- (d) CPU is utime+stime from /proc/<pid>/stat over the window divided by wall time (100 % = one
  core); RSS is VmRSS from /proc/<pid>/status at the end of the window. The virtual printer of (b)
  runs inside the node, so that row includes the simulated firmware.
"""
    return (
        "# LAN queues: pickup, failover, replication, resources (issue 6)\n\n" + how + "\n\n"
        + table + "\n" + resources + "\n" + "\n".join(f"- {d}" for d in details) + "\n" + notes
    )


SCALE_MARK = "<!-- scale mode: everything below is written by --scale -->"


def scale_row(n: int, c: dict[str, Any], jobs: int) -> dict[str, float]:
    return {
        "nodes": n,
        "subs_per_s": jobs / c["submit_s"],
        "last_to_all_s": c["converge_after_last_submit_s"],
        "bg_bytes_node_s": c.get("idle_full_bytes_per_s", float("nan")) / n,
        "bg_empty_bytes_node_s": c.get("idle_bytes_per_s", float("nan")) / n,
        "idle_cpu_pct": statistics.mean(s[0] for s in c["idle_full"]),
        "submitter_cpu_pct": c["busy_ingest"][0][0],
    }


def scale_report(args: argparse.Namespace, rows: list[dict[str, float]], elapsed: float) -> str:
    """The scale table and the ratios of every size to the first, with the issue's targets."""
    head = ("| nodes | submissions/s | last submit -> all nodes | background B/s per node (queue full) "
            "| same, empty queue | idle CPU % per node | submitting node CPU % |\n|---|---|---|---|---|---|---|\n")
    body = "".join(f"| {r['nodes']:.0f} | {r['subs_per_s']:.1f} | {r['last_to_all_s']:.2f} s | "
                   f"{r['bg_bytes_node_s']:.0f} | {r['bg_empty_bytes_node_s']:.0f} | {r['idle_cpu_pct']:.2f} | "
                   f"{r['submitter_cpu_pct']:.0f} |\n" for r in rows)
    base = rows[0]
    ratios = ""
    for r in rows[1:]:
        n, b = r["nodes"], base["nodes"]
        ratios += (f"- {n:.0f} vs {b:.0f} nodes: submissions/s x{r['subs_per_s'] / base['subs_per_s']:.2f} "
                   f"(target >= 0.8); background bytes per node x{r['bg_bytes_node_s'] / base['bg_bytes_node_s']:.2f} "
                   f"(target <= 1.5); last submit -> all {r['last_to_all_s']:.2f} s (target < 1 s); "
                   f"idle CPU per node x{r['idle_cpu_pct'] / max(base['idle_cpu_pct'], 1e-9):.2f}\n")
    where = f" --scale-dir {args.scale_dir}" if args.scale_dir else ""
    return (f"{SCALE_MARK}\n## Scale (issue 14)\n\n`python bench/lan_bench.py --scale {args.scale} --jobs {args.jobs} "
            f"--idle-window {args.idle_window:g}{where}` on {os.cpu_count()} cores ({platform.machine()}), "
            f"{time.strftime('%Y-%m-%d')}, {elapsed:.0f} s. Static full mesh, --no-mdns, {args.jobs} jobs "
            f"submitted on one node ({args.concurrency} in flight); idle figures over {args.idle_window:g} s "
            "with the jobs in the queue. All sizes in one run.\n\n" + head + body + "\n" + ratios)


async def run_scale(args: argparse.Namespace) -> list[dict[str, float]]:
    # Each node of a real farm writes its own SD card; on one machine every node's fsync would
    # queue on one disk and measure that disk. --scale-dir /dev/shm keeps the nodes' data in RAM.
    root = Path(tempfile.mkdtemp(prefix="lan-bench-scale-", dir=args.scale_dir))
    rows = []
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
            for n in [int(x) for x in args.scale.split(",")]:
                print(f"(scale) {n} nodes ...", flush=True)
                c = await bench_replication(root / f"n{n}", session, n, args.jobs, args.concurrency,
                                            args.idle_window)
                rows.append(scale_row(n, c, args.jobs))
                print(f"  {rows[-1]}", flush=True)
    except BaseException:
        print(f"bench failed; node logs kept in {root}", file=sys.stderr)
        raise
    if os.environ.get("LAN_BENCH_KEEP"):
        print(f"node logs kept in {root}")
        return rows
    shutil.rmtree(root, ignore_errors=True)
    return rows


async def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="lan-bench-"))
    res: dict[str, Any] = {}
    only = set(args.only.split(","))
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
            if "a" in only:
                print("(a) pickup ...", flush=True)
                res["a"] = await bench_pickup(root, session, args.pickup_jobs, args.copies)
                if args.baseline_src:
                    print(f"(a) pickup, baseline {args.baseline_src} ...", flush=True)
                    res["a_base"] = await bench_pickup(root, session, args.pickup_jobs, args.copies,
                                                       pythonpath=str(Path(args.baseline_src).resolve()))
            if "b" in only:
                print("(b) failover ...", flush=True)
                res["b"] = await bench_failover(root, session, args.kill_rounds, args.ttl)
            if "c" in only:
                print("(c) replication ...", flush=True)
                res["c"] = await bench_replication(root, session, args.nodes, args.jobs, args.concurrency,
                                                   args.idle_window)
    except BaseException:
        print(f"bench failed; node logs kept in {root}", file=sys.stderr)
        raise
    shutil.rmtree(root, ignore_errors=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description="LAN queue benchmarks on loopback (issue 6)")
    ap.add_argument("--pickup-jobs", type=int, default=10, help="(a) jobs submitted one at a time")
    ap.add_argument("--copies", type=int, default=10, help="(a) copies of the back-to-back job")
    ap.add_argument("--kill-rounds", type=int, default=3, help="(b) holder kills")
    ap.add_argument("--ttl", type=float, default=6.0, help="(b) --lease-ttl of the failover cluster (s)")
    ap.add_argument("--nodes", type=int, default=10, help="(c) nodes")
    ap.add_argument("--jobs", type=int, default=1000, help="(c) jobs to replicate")
    ap.add_argument("--concurrency", type=int, default=8, help="(c) submissions in flight")
    ap.add_argument("--idle-window", type=float, default=30.0,
                    help="(c/d) seconds of idle measurement (default 30: one anti-entropy period at the default TTL)")
    ap.add_argument("--only", default="a,b,c", help="parts to run, e.g. a,c")
    ap.add_argument("--no-netns", action="store_true", help="do not re-run in a private network namespace")
    ap.add_argument("--baseline-src", help="(a) also run with nodes from this source tree (a folder holding "
                    "`lanqueue/`, e.g. `git archive <commit> lanqueue | tar -x -C DIR`) and report ratios")
    ap.add_argument("--baseline-label", help="what the baseline tree is, for the report (e.g. a commit)")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS-lan.md")
    ap.add_argument("--scale", help="scale mode: run (c) at these farm sizes in one run, e.g. 4,24")
    ap.add_argument("--scale-dir", default=None, help="scale mode: where the nodes' data dirs go (e.g. /dev/shm)")
    args = ap.parse_args()

    netns = os.environ.get(NETNS_ENV) == "1"
    if not netns and not args.no_netns and os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip"):
        env = {**os.environ, NETNS_ENV: "1"}
        proc = subprocess.run(["unshare", "--net", "--", sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]],
                              env=env)
        return proc.returncode
    if netns:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    started = time.monotonic()
    if args.scale:
        rows = asyncio.run(run_scale(args))
        section = scale_report(args, rows, time.monotonic() - started)
        print(section)
        old = args.out.read_text() if args.out.exists() else ""
        args.out.write_text(old.split(SCALE_MARK)[0].rstrip("\n") + "\n\n" + section)
        print(f"wrote {args.out}")
        return 0
    res = asyncio.run(run(args))
    text = report(args, res, time.monotonic() - started, netns)
    if args.out.exists() and SCALE_MARK in args.out.read_text():
        text = text.rstrip("\n") + "\n\n" + SCALE_MARK + args.out.read_text().split(SCALE_MARK, 1)[1]
    print(text)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
