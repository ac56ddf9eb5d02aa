"""Etcd queues through etcd's own faults and network cuts, with real processes in network
namespaces: three etcd members (Debian's etcd-server) and two lanqueue nodes on one bridge.

Each test prints jobs with virtual printers and then checks, from every node's history and from
the counts kept in etcd, that every job was printed exactly its count, or that an extra copy was
refused by fencing and shows as a conflict. Needs root (network namespaces) and etcd.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import API_KEY, CP
from etcd_server import EtcdCluster, Member, need_etcd
from lan_helpers import NO_WAIT
from netns import Host, Segment, netns_unavailable
from nshttp import NsHttp

pytestmark = [pytest.mark.slow, pytest.mark.netns,
              pytest.mark.skipif(netns_unavailable() is not None, reason=netns_unavailable() or "")]

H = {"X-Api-Key": API_KEY}
PORT = 5000
SPEED = 100.0  # G4 S50 dwells 0.5 s at this speed


def gcode(tag: str, dwells: int) -> str:
    lines = [f"M117 {tag}", "G28"]
    for i in range(dwells):
        lines += [f"G1 X{i} Y{i} F6000", "G4 S50"]
    return "\n".join(lines) + "\n"


def wait_until(predicate, timeout: float, what: str, step: float = 0.2) -> Any:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"{what}: not reached in {timeout} s")


@dataclass
class Node:
    name: str
    host: Host
    tmp: Path
    endpoints: str
    ttl: float
    lock_delay: float
    proc: subprocess.Popen[bytes] | None = None
    http: NsHttp | None = None

    @property
    def base(self) -> str:
        return f"http://{self.host.address}:{PORT}"

    def start(self) -> None:
        cmd = [sys.executable, "-m", "lanqueue.cli", "serve", "--host", self.host.address, "--port", str(PORT),
               "--data-dir", str(self.tmp / self.name), "--api-key", API_KEY, "--name", self.name,
               "--lan", f"site=etcd://{self.endpoints}", "--no-mdns", "--virtual-speed", str(SPEED),
               "--lease-ttl", str(self.ttl), "--lock-delay", str(self.lock_delay)]
        with open(self.tmp / f"{self.name}.log", "ab") as out:
            self.proc = self.host.popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if self.http is None:
            self.http = NsHttp(self.host)
        wait_until(lambda: self.request("GET", "/api/version", timeout=1.0)[0] == 200, 30, f"{self.name} up")
        self.post(CP + "/automation/edit", data={"json": json.dumps(NO_WAIT)})

    def request(self, method: str, path: str, timeout: float = 5.0, **kw: Any) -> tuple[int, bytes]:
        assert self.http is not None
        return self.http.send(method, self.base + path, headers=H, timeout=timeout, **kw)

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        assert status == 200, f"{self.name} GET {path}: {status} {body[:300]!r}"
        return json.loads(body)

    def post(self, path: str, **kw: Any) -> Any:
        status, body = self.request("POST", path, timeout=10.0, **kw)
        assert 200 <= status < 300, f"{self.name} POST {path}: {status} {body[:300]!r}"
        return json.loads(body) if body else None

    def queue(self) -> dict[str, Any]:
        return next(q for q in self.get(CP + "/state/get")["queues"] if q["name"] == "site")

    def jobs(self) -> list[dict[str, Any]]:
        return self.queue()["jobs"]

    def successes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for h in self.get(CP + "/history/get"):
            if h["result"] == "success":
                out[h["job_name"]] = out.get(h["job_name"], 0) + 1
        return out

    def submit(self, name: str, count: int, dwells: int) -> str:
        self.post("/api/files/local", files={"file": (f"{name}.gcode", gcode(name, dwells).encode())})
        return str(self.post(CP + "/set/add", data={"path": f"{name}.gcode", "queue": "site", "jobDraft": "false",
                                                    "count": str(count), "jobName": name})["job_id"])


@dataclass
class Farm:
    seg: Segment
    etcd: EtcdCluster
    nodes: list[Node]


@pytest.fixture
def farm(tmp_path: Path, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Three etcd members and two nodes; a test marked `@pytest.mark.ttl(x)` sets the lease."""
    need_etcd()
    marker = request.node.get_closest_marker("ttl")
    ttl = float(marker.args[0]) if marker else 6.0
    with Segment(5, subnet="10.214.0") as seg:
        members = [Member(f"m{i}", 2379, 2380, tmp_path / f"etcd-m{i}", seg.hosts[i].address) for i in range(3)]
        etcd = EtcdCluster(members, tmp_path, netns=[h.ns for h in seg.hosts[:3]])
        for i in range(3):
            etcd.start(i)
        status = NsHttp(seg.hosts[3])
        try:
            wait_until(lambda: status.send("POST", members[0].client_url + "/v3/maintenance/status", data=b"{}",
                                           timeout=1)[0] == 200, 20, "etcd up")
        finally:
            status.close()
        endpoints = ",".join(f"{m.host}:2379" for m in members)
        nodes = [Node(f"n{i}", seg.hosts[3 + i], tmp_path, endpoints, ttl=ttl, lock_delay=ttl / 2) for i in range(2)]
        for n in nodes:
            n.start()
        try:
            yield Farm(seg, etcd, nodes)
        finally:
            for n in nodes:
                if n.http is not None:
                    n.http.close()
            etcd.stop()


def leader_of(farm: Farm) -> int:
    """The index of the etcd leader, asked from inside a node's host."""
    node = farm.nodes[0]
    assert node.http is not None
    for i, m in enumerate(farm.etcd.members):
        status, body = node.http.send("POST", m.client_url + "/v3/maintenance/status", data=b"{}", timeout=2)
        if status == 200:
            st = json.loads(body)
            if st.get("leader") == st.get("header", {}).get("member_id"):
                return i
    raise AssertionError("no etcd leader")


def unreachable_link(node: Node) -> dict[str, Any] | None:
    link: dict[str, Any] = node.queue()["link"]
    return None if link["reachable"] else link


def check_exact(farm: Farm, counts: dict[str, int]) -> None:
    """Every job printed exactly its count: by etcd's counts, and by the nodes' histories."""
    jobs = {j["name"]: j for j in farm.nodes[0].jobs()}
    for name, count in counts.items():
        assert jobs[name]["remaining"] == 0, f"{name} not finished: {jobs[name]}"
        assert sum(s["completed"] for s in jobs[name]["sets"]) == count
    printed: dict[str, int] = {}
    for n in farm.nodes:
        for name, k in n.successes().items():
            printed[name] = printed.get(name, 0) + k
    for name, count in counts.items():
        extra = printed.get(name, 0) - count
        conflicts = len(jobs[name]["conflicts"])
        assert extra == conflicts >= 0, f"{name}: printed {printed.get(name, 0)} of {count}, conflicts {conflicts}"


def test_etcd_leader_killed_while_printing(farm: Farm) -> None:
    a, b = farm.nodes
    counts = {f"job{i}": 2 for i in range(4)}
    for name, count in counts.items():
        a.submit(name, count, dwells=2)
    for n in farm.nodes:
        n.post(CP + "/set_active", data={"active": "true"})
    wait_until(lambda: sum(n.successes().get("job0", 0) + n.successes().get("job1", 0) for n in farm.nodes) >= 1,
               60, "printing under way")
    leader = leader_of(farm)
    farm.etcd.kill(leader)
    wait_until(lambda: all(j["remaining"] == 0 for j in b.jobs()), 120, "every job printed after the leader died")
    check_exact(farm, counts)


def test_one_etcd_member_partitioned_away(farm: Farm) -> None:
    a, b = farm.nodes
    isolated = farm.seg.hosts[0]  # the first endpoint every node tries
    isolated.link_down()
    try:
        counts = {f"part{i}": 2 for i in range(3)}
        for name, count in counts.items():
            b.submit(name, count, dwells=2)
        for n in farm.nodes:
            n.post(CP + "/set_active", data={"active": "true"})
        wait_until(lambda: all(j["remaining"] == 0 for j in a.jobs()) and len(a.jobs()) == 3, 120,
                   "every job printed with one member cut off")
    finally:
        isolated.link_up()
    check_exact(farm, counts)


@pytest.mark.ttl(30)
def test_node_cut_off_from_etcd_while_printing(farm: Farm) -> None:
    """Cut off for less than its lease: the print finishes and counts once etcd is back."""
    a, b = farm.nodes
    job_id = a.submit("cut", 1, dwells=12)  # about 6 s
    wait_until(lambda: any(j["id"] == job_id for j in b.jobs()), 20, "b sees the job")
    a.post(CP + "/set_active", data={"active": "true"})
    wait_until(lambda: any(j["id"] == job_id and j["acquired"] for j in a.jobs()), 20, "a prints")
    for m in farm.etcd.members:  # a loses etcd (but not its own page)
        a.host.block(m.host)
    try:
        link = wait_until(lambda: unreachable_link(a), 20, "a's page says etcd is unreachable")
        assert "no new job starts" in link["meaning"] and link["since"]
        # the print goes on and ends here; its completion waits in a's outbox
        wait_until(lambda: a.successes().get("cut") == 1, 30, "a's print finished while cut off")
        assert any(j["id"] == job_id and j["remaining"] == 1 for j in b.jobs()), "counted without etcd?"
    finally:
        for m in farm.etcd.members:
            a.host.unblock(m.host)
    # back within the lease: the completion is delivered and counted once
    wait_until(lambda: any(j["id"] == job_id and j["remaining"] == 0 for j in b.jobs()), 30, "delivered")
    wait_until(lambda: a.queue()["link"]["reachable"], 20, "a reaches etcd again")
    check_exact(farm, {"cut": 1})


def test_node_cut_off_longer_than_its_lease(farm: Farm) -> None:
    """Cut off past its lease (TTL 6 s): a stops its copy by its own clock (another printer may
    take it after TTL + lock-delay), b prints it; one copy in all, nothing counted twice."""
    a, b = farm.nodes
    job_id = a.submit("long", 1, dwells=40)  # about 20 s, longer than TTL + lock-delay (9 s)
    wait_until(lambda: any(j["id"] == job_id for j in b.jobs()), 20, "b sees the job")
    wait_until(lambda: b.get("/api/files")["files"], 20, "b has the file")
    a.post(CP + "/set_active", data={"active": "true"})
    wait_until(lambda: any(j["id"] == job_id and j["acquired"] for j in a.jobs()), 20, "a prints")
    for m in farm.etcd.members:
        a.host.block(m.host)
    try:
        b.post(CP + "/set_active", data={"active": "true"})
        wait_until(lambda: any(j["id"] == job_id and j["remaining"] == 0 for j in b.jobs()), 90,
                   "b prints the copy a's lapsed lease gave back")
    finally:
        for m in farm.etcd.members:
            a.host.unblock(m.host)
    wait_until(lambda: a.queue()["link"]["reachable"], 30, "a reaches etcd again")
    time.sleep(3)  # a's late report, if any, has been delivered by now
    check_exact(farm, {"long": 1})
    results = [h["result"] for h in a.get(CP + "/history/get") if h["job_name"] == "long"]
    assert results and "success" not in results, f"a printed its lapsed copy to the end: {results}"
