"""Discovery between real processes: real mDNS, real HTTP heartbeats, SIGKILL, link down.

Each node is `python -m lanqueue.discovery`; the test polls its peer table over a unix socket
(`--control`), which needs no network and works across network namespaces.
"""

from __future__ import annotations

import http.client
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pytest

from netns import Host, Segment, netns_unavailable

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

INTERVAL = 0.5
MISSED = 3
# offline once MISSED heartbeats failed in a row, each taking at most min(INTERVAL, 2 s)
HEARTBEAT_TIMEOUT = INTERVAL * MISSED + INTERVAL
REPO = Path(__file__).resolve().parent.parent


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class NodeProc:
    """One `python -m lanqueue.discovery` process, optionally inside a namespace host."""

    def __init__(
        self,
        workdir: str,
        *,
        host: Host | None = None,
        node_id: str | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        self.id = node_id or uuid.uuid4().hex[:12]
        self.host = host
        self.address = host.address if host else "127.0.0.1"
        self.control = os.path.join(workdir, f"{self.id}.sock")
        self.log = os.path.join(workdir, f"{self.id}.log")
        self.extra = list(extra)
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        if os.path.exists(self.control):
            os.unlink(self.control)
        args = [
            sys.executable, "-m", "lanqueue.discovery",
            "--id", self.id,
            "--host", self.address,
            "--port", str(self.port),
            "--interface", self.address,
            "--interval", str(INTERVAL),
            "--missed", str(MISSED),
            "--control", self.control,
            "--log-level", "INFO",
            *self.extra,
        ]  # fmt: skip
        kwargs: dict[str, Any] = dict(
            stdout=subprocess.PIPE, stderr=open(self.log, "a"), text=True, cwd=REPO
        )
        self.proc = self.host.popen(args, **kwargs) if self.host else subprocess.Popen(args, **kwargs)

    def wait_ready(self, timeout: float = 10.0) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sel.select(timeout=max(0.0, deadline - time.monotonic())):
                line = self.proc.stdout.readline()
                if line.startswith("READY "):
                    self.port = json.loads(line[6:])["port"]
                    return
                if not line:
                    break
        raise AssertionError(f"node {self.id} not ready; log:\n{Path(self.log).read_text()}")

    def peers(self) -> dict[str, dict[str, Any]]:
        conn = _UnixHTTPConnection(self.control, timeout=2.0)
        try:
            conn.request("GET", "/peers")
            body = json.loads(conn.getresponse().read())
        except OSError:
            return {}
        finally:
            conn.close()
        return {p["node_id"]: p for p in body["peers"]}

    def status_of(self, other: NodeProc) -> str | None:
        peer = self.peers().get(other.id)
        return None if peer is None else peer["status"]

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def workdir() -> Iterator[str]:
    # unix socket paths must stay short (108 bytes), so not pytest's tmp_path
    path = tempfile.mkdtemp(prefix="lqd")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def nodes() -> Iterator[list[NodeProc]]:
    started: list[NodeProc] = []
    yield started
    for node in started:
        node.stop()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)
    return time.monotonic() - start


def all_online(nodes: Sequence[NodeProc]) -> bool:
    return all(
        a.status_of(b) == "online" for a in nodes for b in nodes if a is not b
    )


def launch(nodes: list[NodeProc], new: Sequence[NodeProc]) -> None:
    nodes.extend(new)
    for node in new:
        node.start()
    for node in new:
        node.wait_ready()


def check_crash_and_restart(victim: NodeProc, watchers: Sequence[NodeProc]) -> None:
    victim.signal(signal.SIGKILL)
    took = wait_for(
        lambda: all(w.status_of(victim) == "offline" for w in watchers),
        HEARTBEAT_TIMEOUT + 1.0,
        "killed node shown offline",
    )
    assert all(w.peers()[victim.id]["offline_reason"] == "heartbeat" for w in watchers)
    print(f"SIGKILL -> offline everywhere in {took:.2f} s")
    victim.start()  # same id, same port
    victim.wait_ready()
    wait_for(lambda: all_online([victim, *watchers]), 6.0, "restarted node online")


def test_three_processes_on_loopback(nodes, workdir):
    """Three processes find each other within 5 s of launch; SIGKILL shows offline within the
    heartbeat timeout and a restart online again; SIGTERM says goodbye at once."""
    a, b, c = (NodeProc(workdir, extra=["--queue", "shared"]) for _ in range(3))
    t0 = time.monotonic()
    launch(nodes, [a, b, c])
    wait_for(lambda: all_online([a, b, c]), 5.0 - (time.monotonic() - t0), "discovery")
    print(f"3 processes know each other {time.monotonic() - t0:.2f} s after launch")
    seen = a.peers()[b.id]
    assert seen["queues"] == ["shared"] and seen["trusted"] is True
    assert seen["base_url"] == f"http://127.0.0.1:{b.port}"

    check_crash_and_restart(c, [a, b])

    b.signal(signal.SIGTERM)
    took = wait_for(lambda: a.status_of(b) == "offline", 2.5, "SIGTERM seen")
    print(f"SIGTERM -> offline in {took:.2f} s")
    time.sleep(3 * INTERVAL)  # and it stays so (no flap while b's HTTP was still up)
    assert a.peers()[b.id]["status"] == "offline"
    assert a.peers()[b.id]["offline_reason"] == "goodbye"


def test_sigterm_says_goodbye(nodes, workdir):
    """With heartbeats every 5 s only the awaited mDNS unregister can take a stopped node
    offline within 2.5 s (goodbye records expire 1 s after receipt, RFC 6762 10.1)."""
    a, b = (NodeProc(workdir, extra=["--interval", "5"]) for _ in range(2))
    launch(nodes, [a, b])
    wait_for(lambda: all_online([a, b]), 5.0, "discovery")
    b.signal(signal.SIGTERM)
    assert b.proc is not None and b.proc.returncode == 0
    wait_for(lambda: a.status_of(b) == "offline", 2.5, "goodbye seen")
    assert a.peers()[b.id]["offline_reason"] == "goodbye"


def test_other_protocol_version_is_not_trusted(nodes, workdir):
    a = NodeProc(workdir)
    old = NodeProc(workdir, extra=["--protocol", "0"])
    launch(nodes, [a, old])
    wait_for(lambda: all_online([a, old]), 5.0, "discovery")
    assert a.peers()[old.id]["trusted"] is False
    assert old.peers()[a.id]["trusted"] is False


def test_static_peers_without_multicast(nodes, workdir):
    a = NodeProc(workdir, extra=["--no-mdns"])
    launch(nodes, [a])
    b = NodeProc(workdir, extra=["--no-mdns", "--peer", f"127.0.0.1:{a.port}"])
    launch(nodes, [b])
    wait_for(lambda: all_online([a, b]), 5.0, "static discovery")
    assert b.peers()[a.id]["static"] is True


@pytest.fixture
def segment() -> Iterator[Segment]:
    reason = netns_unavailable()
    if reason:
        pytest.skip(f"network-namespace test skipped: {reason}")
    with Segment(3) as seg:
        yield seg


@pytest.mark.netns
def test_three_hosts_on_a_bridge(segment, nodes, workdir):
    """Three hosts in separate namespaces find each other by mDNS over a bridge; a killed node
    is offline within the heartbeat timeout and online after restart; a link taken down and up
    is handled the same way, on both sides of the link."""
    a, b, c = (NodeProc(workdir, host=h) for h in segment.hosts)
    t0 = time.monotonic()
    launch(nodes, [a, b, c])
    wait_for(lambda: all_online([a, b, c]), 8.0, "discovery across namespaces")
    print(f"3 namespaces know each other {time.monotonic() - t0:.2f} s after launch")
    assert a.peers()[c.id]["base_url"] == f"http://{c.address}:{c.port}"

    check_crash_and_restart(b, [a, c])

    assert c.host is not None
    c.host.link_down()
    try:
        took = wait_for(
            lambda: a.status_of(c) == b.status_of(c) == c.status_of(a) == c.status_of(b) == "offline",
            HEARTBEAT_TIMEOUT + 3.0,
            "link down seen on both sides",
        )
        print(f"link down -> offline on both sides in {took:.2f} s")
    finally:
        c.host.link_up()
    wait_for(lambda: all_online([a, b, c]), 8.0, "link up: online again")
