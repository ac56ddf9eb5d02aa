"""`lanqueue demo`: a small farm on this machine, for a first look.

Starts N `lanqueue serve` processes on 127.0.0.1 (ports base_port, base_port+1, ...), each with
its own data dir in a temporary folder and its own virtual printer, all joined to one LAN queue
`demo` (a fresh secret, static peers, no mDNS: everything stays on loopback). It uploads the shipped
sample G-code files (lanqueue/samples: one per slicer, with thumbnails and estimates), submits
LAN jobs with counts from different nodes, replaces each
node's "wait for a person after each print" automation with a no-wait bed sweep so the farm keeps
printing unattended, starts every node and shows a live table until Ctrl-C (or SIGTERM), then
stops every node (SIGTERM, a grace period, then SIGKILL for stragglers) and removes the folder.

The demo only talks to the nodes through their public HTTP API (lanqueue.client.NodeClient).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.live import Live
from rich.table import Table

from .client import CP, ClientError, NodeClient

__all__ = ["API_KEY", "NO_WAIT_AUTOMATION", "QUEUE", "SAMPLES", "prints_left", "run_demo", "sample_gcode"]

API_KEY = "lanqueue-demo"  # a known key: the demo listens on loopback only
QUEUE = "demo"
HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_GRACE = 15.0
NO_WAIT_AUTOMATION: dict[str, Any] = {
    "scripts": {"clear": "G28 X"},
    "preprocessors": {},
    "events": {"continuousprint_success": [{"script": "clear", "preprocessor": ""}]},
}
# (sample file in lanqueue/samples, copies): parts of different slicers and lengths, submitted
# round-robin on the nodes; the page shows each one's thumbnail and the slicer's estimates
SAMPLES: tuple[tuple[str, int], ...] = (
    ("prusaslicer", 3),
    ("orcaslicer", 2),
    ("cura", 2),
    ("superslicer", 4),
)


def sample_gcode(name: str) -> bytes:
    """The bytes of a shipped sample (`lanqueue samples` copies them out for trying a node)."""
    from importlib.resources import files

    return files("lanqueue").joinpath("samples", f"{name}.gcode").read_bytes()


@dataclass
class DemoNode:
    index: int
    port: int
    data_dir: Path
    log: Path
    proc: asyncio.subprocess.Process | None = None
    client: NodeClient | None = None
    view: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"demo-{self.index + 1}"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the node gets SIGTERM if the demo dies without stopping it (kill -9 of the demo)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not Linux's libc: no such safety net
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


async def _start_node(node: DemoNode, ports: list[int], secret: str, speed: float) -> None:
    # -P and a cwd of our own: started from the folder that holds a checkout, `-m lanqueue.cli`
    # would import ./lanqueue (the checkout, no __init__.py) as a namespace package and fail
    cmd = [
        sys.executable, "-P", "-m", "lanqueue.cli", "serve",
        "--host", HOST, "--port", str(node.port), "--data-dir", str(node.data_dir),
        "--name", node.name, "--api-key", API_KEY, "--no-mdns",
        "--virtual-speed", repr(float(speed)), "--lan", f"{QUEUE}={secret}",
    ]
    for p in ports:
        if p != node.port:
            cmd += ["--peer", f"{HOST}:{p}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for key in [k for k in env if k.startswith("LANQUEUE_")]:
        del env[key]  # the demo's nodes take their options from this command line only
    with open(node.log, "ab") as log:  # noqa: ASYNC230 - opening a local log file does not wait
        # Own session: a Ctrl-C in the terminal reaches the demo only, which then stops the
        # nodes in order instead of every process racing to shut down at once.
        node.proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
            env=env, cwd=node.data_dir.parent, start_new_session=True, preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )


async def _wait_ready(node: DemoNode, deadline: float) -> None:
    assert node.client is not None
    while True:
        if not node.alive:
            tail = node.log.read_text(errors="replace")[-1500:] if node.log.exists() else ""
            raise RuntimeError(f"{node.name} exited during start; the end of its log ({node.log}):\n{tail}")
        try:
            await node.client.request("GET", "/api/version")
            return
        except (TimeoutError, aiohttp.ClientError, ClientError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{node.name} did not answer on {node.url} within {START_TIMEOUT:.0f} s")
        await asyncio.sleep(0.1)


async def _wait_peers(nodes: list[DemoNode], timeout: float = 10.0) -> bool:
    """Until every node sees every other one online (heartbeats); False on timeout."""
    deadline = time.monotonic() + timeout
    want = len(nodes) - 1
    while time.monotonic() < deadline:
        try:
            counts = []
            for n in nodes:
                assert n.client is not None
                peers = (await n.client.request("GET", "/lanqueue/peers"))["peers"]
                counts.append(sum(1 for p in peers if p.get("status") == "online"))
            if all(c >= want for c in counts):
                return True
        except (TimeoutError, aiohttp.ClientError, ClientError, KeyError, TypeError):
            pass
        await asyncio.sleep(0.2)
    return False


async def _stop_nodes(nodes: list[DemoNode], grace: float = STOP_GRACE,
                      hurry: asyncio.Event | None = None) -> list[str]:
    """SIGTERM every node, wait up to `grace` seconds (or until `hurry` is set: a second Ctrl-C),
    SIGKILL the rest. Returns the names of the nodes that had to be killed."""
    for n in nodes:
        if n.alive:
            assert n.proc is not None
            with contextlib.suppress(ProcessLookupError):
                n.proc.send_signal(signal.SIGTERM)
    waits = [n.proc.wait() for n in nodes if n.proc is not None]
    if waits:
        all_exited: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*waits))
        hurried: asyncio.Future[Any] = asyncio.ensure_future((hurry or asyncio.Event()).wait())
        await asyncio.wait({all_exited, hurried}, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        hurried.cancel()
        if not all_exited.done():
            all_exited.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await all_exited
    killed = []
    for n in nodes:
        if n.alive:
            assert n.proc is not None
            killed.append(n.name)
            with contextlib.suppress(ProcessLookupError):
                n.proc.kill()
            await n.proc.wait()
    return killed


async def _setup_farm(nodes: list[DemoNode], root: Path, console: Console) -> int:
    """Automation, sample files and LAN jobs; returns how many prints were queued."""
    for n in nodes:
        assert n.client is not None
        await n.client.request("POST", CP + "/automation/edit", data={"json": json.dumps(NO_WAIT_AUTOMATION)})
    samples = root / "samples"
    samples.mkdir(exist_ok=True)
    total = 0
    for i, (name, copies) in enumerate(SAMPLES):
        node = nodes[i % len(nodes)]
        assert node.client is not None
        path = samples / f"{name}.gcode"
        path.write_bytes(sample_gcode(name))
        uploaded = await node.client.upload(path)
        stored = uploaded["files"]["local"]["path"]
        await _when_ready(lambda node=node, stored=stored, name=name, copies=copies: node.client.request(  # type: ignore[union-attr]
            "POST", CP + "/set/add", data={
                "path": stored, "queue": QUEUE, "jobDraft": "false", "count": str(copies), "jobName": name,
            }))
        total += copies
        console.print(f"  queued [bold]{name}[/bold] x{copies} in LAN queue {QUEUE!r} from {node.name}")
    return total


async def _when_ready(call: Any, timeout: float = 30.0) -> Any:
    """`call()`, again while the node answers 409 (a LAN queue still catching up with its
    peers right after start), up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except ClientError as e:
            if ": 409 " not in str(e) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.25)


def _urls_table(nodes: list[DemoNode]) -> Table:
    table = Table(title=f"lanqueue demo: {len(nodes)} nodes, LAN queue {QUEUE!r}", title_justify="left")
    table.add_column("node")
    table.add_column("page", overflow="fold")
    table.add_column("log", overflow="fold")
    for n in nodes:
        table.add_row(n.name, f"{n.url}/?apikey={API_KEY}", str(n.log))
    return table


async def _poll(node: DemoNode) -> None:
    """Refresh `node.view` from the node's API (state/get and /api/job)."""
    view: dict[str, Any] = {"printer": "?", "job": "", "status": "", "remaining": None, "done": None}
    if not node.alive:
        view["printer"] = "exited"
        node.view = view
        return
    assert node.client is not None
    try:
        state, job = await asyncio.gather(node.client.state(), node.client.request("GET", "/api/job"))
    except (TimeoutError, aiohttp.ClientError, ClientError, ValueError) as e:
        view["printer"] = f"unreachable ({type(e).__name__})"
        node.view = view
        return
    view["printer"] = job.get("state", "?")
    name = (job.get("job") or {}).get("file", {}).get("name")
    done = (job.get("progress") or {}).get("completion")
    if name and str(view["printer"]).lower().startswith(("printing", "pausing", "paused", "cancelling")):
        view["job"] = f"{name} {done:.0f}%" if done is not None else name
    view["status"] = state.get("status", "")
    view["remaining"] = sum(prints_left(j) for q in state.get("queues", []) for j in q.get("jobs", []))
    node.view = view


def prints_left(job: dict[str, Any]) -> int:
    """Prints a job still needs: what is left of this run of its sets, plus full runs to come."""
    runs = int(job.get("remaining") or 0)
    if job.get("draft") or runs <= 0:
        return 0
    sets = job.get("sets") or []
    return sum(int(s.get("remaining") or 0) for s in sets) + (runs - 1) * sum(int(s.get("count") or 0) for s in sets)


def _status_table(nodes: list[DemoNode], started: float) -> Table:
    elapsed = time.monotonic() - started
    table = Table(title=f"farm after {elapsed:.0f} s (Ctrl-C stops every node)", title_justify="left")
    for col in ("node", "printer", "current job", "driver", "prints left in queues"):
        table.add_column(col)
    for n in nodes:
        v = n.view
        table.add_row(n.name, str(v.get("printer", "?")), str(v.get("job") or "-"), str(v.get("status") or ""),
                      "?" if v.get("remaining") is None else str(v["remaining"]))
    return table


def _status_line(nodes: list[DemoNode], started: float) -> str:
    parts = [f"{n.name}: {n.view.get('printer', '?')} {n.view.get('job') or '-'} (left {n.view.get('remaining')})"
             for n in nodes]
    return f"[{time.monotonic() - started:5.0f} s] " + "; ".join(parts)


async def _watch(nodes: list[DemoNode], stop: asyncio.Event, console: Console) -> None:
    started = time.monotonic()

    async def refresh() -> None:
        await asyncio.gather(*(_poll(n) for n in nodes))

    async def sleep_or_stop(seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    if console.is_terminal:
        await refresh()
        with Live(_status_table(nodes, started), console=console, refresh_per_second=4) as live:
            while not stop.is_set():
                await sleep_or_stop(0.5)
                await refresh()
                live.update(_status_table(nodes, started))
    else:  # a pipe or a file: a plain line every few seconds instead of redrawing
        while not stop.is_set():
            await refresh()
            console.print(_status_line(nodes, started), highlight=False, soft_wrap=True)
            await sleep_or_stop(5.0)


async def run_demo(nodes: int, base_port: int, speed: float) -> int:
    """Run the demo until Ctrl-C or SIGTERM; 0 after a clean stop, 1 if the farm did not start."""
    console = Console()
    if nodes < 1:
        console.print("[red]the demo needs at least one node[/red]")
        return 2
    if not 0 < base_port <= 65535 - nodes + 1:
        console.print(f"[red]ports {base_port}..{base_port + nodes - 1} are out of range[/red]")
        return 2
    if speed <= 0:
        console.print("[red]the speed must be positive[/red]")
        return 2
    taken = [p for p in range(base_port, base_port + nodes) if not _port_free(p)]
    if taken:
        console.print(f"[red]port(s) {', '.join(map(str, taken))} on {HOST} are in use[/red] "
                      "(another demo or node?); choose others with --base-port")
        return 2
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    hurry = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            hurry.set()  # a second Ctrl-C: do not wait for the nodes any longer
        stop.set()

    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal went away
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
            handled.append(sig)

    root = Path(tempfile.mkdtemp(prefix="lanqueue-demo-"))
    secret = secrets.token_urlsafe(18)
    ports = [base_port + i for i in range(nodes)]
    farm = [DemoNode(i, p, root / f"node{i + 1}", root / f"node{i + 1}.log") for i, p in enumerate(ports)]
    status = 0
    total = 0
    timeout = aiohttp.ClientTimeout(total=10, sock_connect=2)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            console.print(f"starting {nodes} nodes with virtual printers at {speed:g}x speed "
                          f"on {HOST}:{ports[0]}-{ports[-1]} (data and logs in {root})")
            for n in farm:
                n.client = NodeClient(session, n.url, API_KEY)
                await _start_node(n, ports, secret, speed)
            try:
                deadline = time.monotonic() + START_TIMEOUT
                await _wait_interruptible(asyncio.gather(*(_wait_ready(n, deadline) for n in farm)), stop)
                if (not stop.is_set() and not await _wait_interruptible(_wait_peers(farm), stop)
                        and not stop.is_set()):
                    console.print("[yellow]not every node sees every peer yet; going on[/yellow]")
                if not stop.is_set():
                    total = await _wait_interruptible(_setup_farm(farm, root, console), stop)
                if not stop.is_set():
                    for n in farm:
                        assert n.client is not None
                        await n.client.set_active(True)
                    console.print(f"{total} prints queued; every node is printing from LAN queue {QUEUE!r} "
                                  f"(API key {API_KEY!r})")
                    console.print(_urls_table(farm))
                    await _watch(farm, stop, console)
            except (TimeoutError, RuntimeError, ClientError, aiohttp.ClientError) as e:
                console.print(f"[red]demo failed:[/red] {e}")
                status = 1
    finally:
        _say(console, "stopping the nodes ... (Ctrl-C again to kill them at once)")
        killed = await _stop_nodes(farm, STOP_GRACE, hurry)
        if killed:
            _say(console, f"[yellow]killed (did not stop in time): {', '.join(killed)}[/yellow]")
        for sig in handled:
            loop.remove_signal_handler(sig)
        if status == 0:
            shutil.rmtree(root, ignore_errors=True)
        else:
            _say(console, f"logs kept in {root}")
        _say(console, "all nodes stopped")
    return status


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _say(console: Console, text: str) -> None:
    """Print while stopping; a terminal that is gone (EIO, closed pipe) must not keep the nodes alive."""
    with contextlib.suppress(OSError, ValueError):
        console.print(text)


async def _wait_interruptible(aw: Any, stop: asyncio.Event) -> Any:
    """Await `aw` unless `stop` is set first (then cancel it and return None)."""
    task = asyncio.ensure_future(aw)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return None
