"""Hosts on a private Ethernet segment, made of Linux network namespaces, for cluster tests.

    with Segment(3) as seg:            # needs root and iproute2 (`ip`)
        a, b, c = seg.hosts
        proc = a.popen([sys.executable, "-m", "lanqueue.discovery", "--host", a.address])
        c.link_down(); c.link_up()

Layout: one namespace holds a bridge; each host is a namespace with loopback up and one veth
`eth0` (multicast on) plugged into that bridge, addressed in a private /24 (default
10.213.0.0/24, host i gets .i+1). Nothing is created in the caller's namespace, so test traffic
(mDNS included) never leaves the namespaces this module made, and tests running in parallel
cannot see each other (names carry the pid and a random token). Everything is deleted on exit,
even after a failure; processes started with `popen` are killed first.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = ["Host", "Segment", "netns_unavailable"]


def netns_unavailable() -> str | None:
    """Why network namespaces cannot be used here (a reason for pytest.skip), or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2 (`ip`): apt-get install iproute2"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Host:
    """One host of the segment: a namespace with `eth0` at `address`."""

    ns: str
    address: str
    ifname: str = "eth0"
    _procs: list[subprocess.Popen[Any]] = field(default_factory=list, repr=False)

    def command(self, args: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *args]

    def popen(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a process inside this host; it is killed when the segment is torn down."""
        proc = subprocess.Popen(self.command(args), **kwargs)
        self._procs.append(proc)
        return proc

    def run(self, args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        kwargs.setdefault("check", True)
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.command(args), **kwargs)

    def link_down(self) -> None:
        _ip("-n", self.ns, "link", "set", "dev", self.ifname, "down")

    def link_up(self) -> None:
        _ip("-n", self.ns, "link", "set", "dev", self.ifname, "up")

    def block(self, address: str) -> None:
        """Drop this host's traffic to `address` (a blackhole route). Block both ends for a
        partition between two hosts that both still reach the others."""
        _ip("-n", self.ns, "route", "add", "blackhole", f"{address}/32")

    def unblock(self, address: str) -> None:
        _ip("-n", self.ns, "route", "del", "blackhole", f"{address}/32")

    def kill_all(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        self._procs.clear()


class Segment:
    """A context manager creating `n` hosts on one bridge (see the module docstring)."""

    def __init__(self, n: int, *, subnet: str = "10.213.0", prefix: str | None = None) -> None:
        if not 1 <= n <= 250:
            raise ValueError("1..250 hosts")
        self.n = n
        self.subnet = subnet
        self.prefix = prefix or f"lq{os.getpid()}{secrets.token_hex(2)}"
        self.bridge_ns = f"{self.prefix}-br"
        self.hosts: list[Host] = []
        self._namespaces: list[str] = []

    def __enter__(self) -> Segment:
        reason = netns_unavailable()
        if reason:
            raise RuntimeError(reason)
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _add_ns(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)
        _ip("-n", name, "link", "set", "dev", "lo", "up")

    def _create(self) -> None:
        br = self.bridge_ns
        self._add_ns(br)
        _ip("-n", br, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        _ip("-n", br, "link", "set", "dev", "br0", "up")
        for i in range(self.n):
            ns = f"{self.prefix}-h{i}"
            self._add_ns(ns)
            port = f"p{i}"
            _ip("-n", br, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", br, "link", "set", "dev", port, "master", "br0")
            _ip("-n", br, "link", "set", "dev", port, "up")
            address = f"{self.subnet}.{i + 1}"
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "dev", "eth0", "multicast", "on")
            _ip("-n", ns, "link", "set", "dev", "eth0", "up")
            self.hosts.append(Host(ns=ns, address=address))

    def close(self) -> None:
        """Kill what runs in the hosts, delete every namespace made (idempotent)."""
        for host in self.hosts:
            host.kill_all()
        for name in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self._namespaces.clear()
