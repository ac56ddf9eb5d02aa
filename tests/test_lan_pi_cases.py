"""Issue 11 with real processes: what people do with Raspberry Pis, one test per numbered case.

Each test runs `lanqueue serve` nodes in network namespaces on one bridge (tests/netns.py, the
same nodes as the chaos test), lets them print LAN jobs on their virtual printers, does the
thing people do, and then checks what came off the printers: each job's successful prints,
collected from every node's history while the test runs (a node whose disk is put back loses
rows of its own history, so the test keeps its own ledger), equal the job's count, or every extra
copy is a conflict shown on the job with its reason. For cases 1-4 the node also says what went
wrong (`/lanqueue/peers` -> `lan_standing`, and the conflicts' kinds).

1. a home's data dir put back to an older copy (a restored SD image);
2. a printer's data dir put back (its completion numbers go back);
3. a copied data dir started as a second node (same node id);
4. adopt from a stale copy while the node holding the newer one is cut off;
5. a node whose wall clock is hours off (libfaketime), and a signed request replayed after the
   receiver restarted;
6. a printing node frozen (SIGSTOP) beyond TTL + lock-delay.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import CP
from lan_helpers import NO_WAIT
from netns import Segment, netns_unavailable
from test_lan_chaos import PORT, SECRET, TTL, ChaosNode, gcode, wait_until

_why_not = netns_unavailable()
pytestmark = [pytest.mark.slow, pytest.mark.netns, pytest.mark.timeout(300),
              pytest.mark.skipif(_why_not is not None, reason=_why_not or "")]

FAKETIME_LIB = next((p for p in (Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"),
                                 Path("/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"))
                     if p.exists()), None)
#: A node catches up after each restart: identity grace min(15, TTL) + 4 anti-entropy periods.
CATCH_UP = min(15.0, TTL) + 4 * TTL / 2 + 5


class Ledger:
    """Every successful print of every job, from all nodes' histories, polled while the test runs."""

    def __init__(self, nodes: list[ChaosNode]) -> None:
        self.nodes = nodes
        self.seen: set[tuple[str, float, str]] = set()

    def poll(self) -> None:
        for n in self.nodes:
            if n.proc is None or n.proc.poll() is not None:
                continue
            try:
                for row in n.get(CP + "/history/get", timeout=3):
                    if row["result"] == "success" and row["queue_name"] == "farm":
                        self.seen.add((n.name, row["start"], row["job_name"]))
            except Exception:  # noqa: BLE001 - a node restarting or frozen: poll again later
                pass

    def copies(self, job_name: str) -> int:
        return sum(1 for _, _, name in self.seen if name == job_name)


def start_all(nodes: list[ChaosNode]) -> None:
    for n in nodes:
        n.start()
    for n in nodes:
        n.wait_ready()
    wait_until(lambda: all(n.online_peers() == len(nodes) - 1 for n in nodes), 30, "all peers online")
    for n in nodes:
        n.post(CP + "/automation/edit", data={"json": json.dumps(NO_WAIT)})


def submit(node: ChaosNode, name: str, count: int) -> str:
    path = f"{name}.gcode"
    node.post("/api/files/local", timeout=20, files={"file": (path, gcode(name))})
    added = node.post(CP + "/set/add", data={"path": path, "queue": "farm", "count": str(count),
                                            "jobDraft": "false"})
    return str(added["job_id"])


def job(node: ChaosNode, job_id: str) -> dict[str, Any] | None:
    return next((j for j in node.lan_jobs() if j["id"] == job_id), None)


def wait_done(nodes: list[ChaosNode], job_id: str, ledger: Ledger, timeout: float = 150) -> None:
    def done() -> bool:
        ledger.poll()
        return all((j := job(n, job_id)) is not None and j["remaining"] == 0 and not j["acquired"] for n in nodes)

    wait_until(done, timeout, f"job {job_id[:8]} done on every node", step=0.5)
    time.sleep(1.0)
    ledger.poll()


def check_copies(node: ChaosNode, job_id: str, name: str, count: int, ledger: Ledger) -> list[dict[str, Any]]:
    """Copies printed == count, or each extra one is a conflict with its reason. Returns the
    job's conflicts."""
    j = job(node, job_id)
    assert j is not None
    conflicts = j.get("conflicts") or []
    made = ledger.copies(name)
    print(f"{name}: {made} copies printed for {count} requested; conflicts: "
          f"{[(c.get('kind'), c.get('detail')) for c in conflicts]}")
    assert made >= count, f"{name}: only {made} of {count} copies printed"
    assert made - count <= len(conflicts), f"{name}: {made - count} extra copies, {len(conflicts)} conflicts shown"
    assert all(c.get("detail") or c.get("kind") for c in conflicts)
    return conflicts


def standing(node: ChaosNode) -> dict[str, Any]:
    return node.get("/lanqueue/peers").get("lan_standing", {}).get("farm", {})


def stop(node: ChaosNode) -> None:
    assert node.proc is not None
    node.proc.send_signal(signal.SIGKILL)
    node.proc.wait()


def activate(*nodes: ChaosNode) -> None:
    for n in nodes:
        n.post(CP + "/set_active", data={"active": "true"})


def print_one_more(ledger: Ledger, name: str, at_least: int, timeout: float = 60) -> None:
    def enough() -> bool:
        ledger.poll()
        return ledger.copies(name) >= at_least

    wait_until(enough, timeout, f"{at_least} copies of {name} printed", step=0.3)


# ------------------------------------------------------------------------------------ the cases
def test_case1_home_restored_from_an_older_image(tmp_path: Path) -> None:
    with Segment(2, subnet="10.214.1") as seg:
        addrs = [h.address for h in seg.hosts]
        home, printer = (ChaosNode(n, h, tmp_path, [a for a in addrs if a != h.address])
                         for n, h in zip(("home", "printer"), seg.hosts))
        nodes = [home, printer]
        ledger = Ledger(nodes)
        try:
            start_all(nodes)
            jid = submit(home, "case1", 4)
            wait_until(lambda: job(printer, jid), 30, "replicated")
            stop(home)  # the image is taken with the node off (as one does with an SD card)
            image = tmp_path / "home-image"
            shutil.copytree(home.data_dir, image)
            home.start()
            home.wait_ready()
            activate(printer)  # only the printer prints; the home grants
            print_one_more(ledger, "case1", 2)
            stop(home)
            shutil.rmtree(home.data_dir)
            shutil.copytree(image, home.data_dir)  # the card is put back
            home.start()
            home.wait_ready()
            wait_done(nodes, jid, ledger, timeout=CATCH_UP + 120)
            conflicts = check_copies(home, jid, "case1", 4, ledger)
            said = standing(home).get("rolled_back", "")
            assert "went back in time" in said, standing(home)
            assert any(c.get("kind") == "rolled_back" for c in conflicts)
        finally:
            for n in nodes:
                n.host.kill_all()


def test_case2_printer_restored_from_an_older_image(tmp_path: Path) -> None:
    with Segment(2, subnet="10.214.2") as seg:
        addrs = [h.address for h in seg.hosts]
        home, printer = (ChaosNode(n, h, tmp_path, [a for a in addrs if a != h.address])
                         for n, h in zip(("home", "printer"), seg.hosts))
        nodes = [home, printer]
        ledger = Ledger(nodes)
        try:
            start_all(nodes)
            jid = submit(home, "case2", 4)
            wait_until(lambda: job(printer, jid), 30, "replicated")
            stop(printer)
            image = tmp_path / "printer-image"
            shutil.copytree(printer.data_dir, image)
            printer.start()
            printer.wait_ready()
            activate(printer)
            print_one_more(ledger, "case2", 2)
            stop(printer)
            shutil.rmtree(printer.data_dir)
            shutil.copytree(image, printer.data_dir)  # next_seq goes back with it
            printer.start()
            printer.wait_ready()
            activate(printer)
            wait_done(nodes, jid, ledger, timeout=CATCH_UP + 120)
            check_copies(home, jid, "case2", 4, ledger)
            assert "went back in time" in standing(printer).get("rolled_back", ""), standing(printer)
        finally:
            for n in nodes:
                n.host.kill_all()


def test_case3_cloned_card_runs_as_a_second_node(tmp_path: Path) -> None:
    with Segment(3, subnet="10.214.3") as seg:
        addrs = [h.address for h in seg.hosts]
        home, printer = (ChaosNode(n, h, tmp_path, [a for a in addrs[:2] if a != h.address])
                         for n, h in zip(("home", "printer"), seg.hosts[:2]))
        nodes = [home, printer]
        ledger = Ledger(nodes)
        clone = ChaosNode("clone", seg.hosts[2], tmp_path, [addrs[0]])
        try:
            start_all(nodes)
            stop(printer)
            shutil.copytree(printer.data_dir, clone.data_dir)  # the card is copied
            printer.start()
            printer.wait_ready()
            # The home knows the printer's id at both addresses: one node id, two machines.
            home.proc and stop(home)
            home.peers = [addrs[1], addrs[2]]
            home.start()
            home.wait_ready()
            clone.start()
            clone.wait_ready()
            assert clone.node_id == printer.node_id
            jid = submit(home, "case3", 3)
            activate(printer, clone)
            said = wait_until(lambda: [standing(n) for n in (printer, clone)
                                       if standing(n).get("state") == "identity_clash"], CATCH_UP + 60,
                              "a copy of the id noticed")
            assert "reset-identity" in said[0]["detail"]
            # The user follows the advice: stop the copy, give it its own identity, start it.
            stop(clone)
            out = subprocess.run([sys.executable, "-m", "lanqueue.cli", "reset-identity", "--data-dir",
                                  str(clone.data_dir)], capture_output=True, text=True, timeout=30)
            assert out.returncode == 0, out.stderr
            clone.start()
            clone.wait_ready()
            assert clone.node_id != printer.node_id
            activate(clone)
            nodes.append(clone)
            wait_done([home, printer], jid, ledger, timeout=CATCH_UP * 2 + 150)
            check_copies(home, jid, "case3", 3, ledger)
        finally:
            for n in (*nodes, clone):
                n.host.kill_all()


def test_case4_adopt_from_a_stale_copy_while_the_newer_one_is_cut_off(tmp_path: Path) -> None:
    with Segment(3, subnet="10.214.4") as seg:
        addrs = [h.address for h in seg.hosts]
        home, printer, adopter = (ChaosNode(n, h, tmp_path, [a for a in addrs if a != h.address])
                                  for n, h in zip(("home", "printer", "adopter"), seg.hosts))
        nodes = [home, printer, adopter]
        ledger = Ledger(nodes)
        try:
            start_all(nodes)
            jid = submit(home, "case4", 3)
            wait_until(lambda: job(adopter, jid), 30, "replicated")
            adopter.host.link_down()  # the adopter misses what follows
            activate(printer)
            print_one_more(ledger, "case4", 1)
            stop(home)  # the home is gone for good
            printer.post(CP + "/set_active", data={"active": "false"})
            printer.host.link_down()  # and the printer, holding the newer copy, is cut off
            adopter.host.link_up()
            wait_until(lambda: not any(p.get("status") == "online" for p in adopter.get("/lanqueue/peers")["peers"]),
                       30, "adopter sees nobody online")
            adopter.post("/lanqueue/lan/adopt", data={"node": home.node_id})
            activate(adopter)
            printer.host.link_up()
            activate(printer)
            wait_done([printer, adopter], jid, ledger, timeout=150)
            conflicts = check_copies(adopter, jid, "case4", 3, ledger)
            assert any(c.get("kind") == "diverged" for c in conflicts), conflicts
        finally:
            for n in nodes:
                n.host.kill_all()


@pytest.mark.skipif(FAKETIME_LIB is None, reason="libfaketime is not installed (apt-get install faketime)")
def test_case5_clock_hours_off_and_replay_after_restart(tmp_path: Path) -> None:
    with Segment(2, subnet="10.214.5") as seg:
        addrs = [h.address for h in seg.hosts]
        home, printer = (ChaosNode(n, h, tmp_path, [a for a in addrs if a != h.address])
                         for n, h in zip(("home", "printer"), seg.hosts))
        nodes = [home, printer]
        ledger = Ledger(nodes)
        os.environ["LD_PRELOAD"] = str(FAKETIME_LIB)  # the printer's wall clock is 5 hours behind
        os.environ["FAKETIME"] = "-5h"
        try:
            printer.start()
        finally:
            del os.environ["LD_PRELOAD"], os.environ["FAKETIME"]
        try:
            home.start()
            for n in nodes:
                n.wait_ready()
            wait_until(lambda: all(n.online_peers() == 1 for n in nodes), 30, "peers online")
            for n in nodes:
                n.post(CP + "/automation/edit", data={"json": json.dumps(NO_WAIT)})
            jid = submit(home, "case5", 2)
            activate(printer)
            wait_done(nodes, jid, ledger, timeout=120)
            assert ledger.copies("case5") == 2 and all(n == "printer" for n, _, _ in ledger.seen)
            # the printer's clock really was hours off: its history says the copies were made 5 h ago
            assert all(start < time.time() - 4 * 3600 for _, start, _ in ledger.seen), ledger.seen
            check_copies(home, jid, "case5", 2, ledger)
            # A signed request captured on the wire, replayed after the receiver restarted.
            replay = [sys.executable, "-c", _REPLAY, home.base, SECRET, jid]
            first = printer.host.run(replay, capture_output=True, text=True, timeout=30)
            assert first.returncode == 0, first.stderr
            captured = json.loads(first.stdout)
            stop(home)
            home.start()
            home.wait_ready()
            again = printer.host.run([sys.executable, "-c", _RESEND, home.base, json.dumps(captured)],
                                     capture_output=True, text=True, timeout=30)
            assert again.stdout.strip() == "401", again.stdout + again.stderr
        finally:
            for n in nodes:
                n.host.kill_all()


#: Signs one peer request as a member would (learning the receiver's run first) and prints it.
_REPLAY = """
import json, sys, urllib.request, urllib.error
from lanqueue.sync.auth import sign_request
from lanqueue.sync import codec
from lanqueue.sync.messages import DigestRequest
base, secret, job = sys.argv[1], sys.argv[2].encode(), sys.argv[3]
path = "/lanqueue/peer/v1/message"
body = codec.dumps(DigestRequest("replayer", ()))
def send(audience, counter):
    h = sign_request(secret, "POST", path, body, node_id="replayer", queue="farm", instance="replayer-run",
                     audience=audience, counter=counter)
    h["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path, data=body, headers=h, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), h
    except urllib.error.HTTPError as e:
        return e.code, e.read(), h
status, answer, _ = send("", 1)
assert status == 401, status
status, answer, headers = send(json.loads(answer)["instance"], 2)
assert status == 200, (status, answer)
print(json.dumps({"headers": headers, "body": body.decode()}))
"""

_RESEND = """
import json, sys, urllib.request, urllib.error
base, captured = sys.argv[1], json.loads(sys.argv[2])
req = urllib.request.Request(base + "/lanqueue/peer/v1/message", data=captured["body"].encode(),
                             headers=captured["headers"], method="POST")
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
"""


def test_case6_holder_frozen_beyond_ttl_and_lock_delay(tmp_path: Path) -> None:
    with Segment(2, subnet="10.214.6") as seg:
        addrs = [h.address for h in seg.hosts]
        home, printer = (ChaosNode(n, h, tmp_path, [a for a in addrs if a != h.address])
                         for n, h in zip(("home", "printer"), seg.hosts))
        nodes = [home, printer]
        ledger = Ledger(nodes)
        try:
            start_all(nodes)
            jid = submit(home, "case6", 2)
            activate(printer)
            wait_until(printer.printing, 30, "printer printing")
            assert printer.proc is not None
            os.kill(printer.proc.pid, signal.SIGSTOP)
            time.sleep(2 * TTL + 3)  # the outage itself: TTL + lock-delay and more
            os.kill(printer.proc.pid, signal.SIGCONT)
            activate(home)  # the home prints too, so the job gets done whoever holds it
            wait_done(nodes, jid, ledger, timeout=150)
            check_copies(home, jid, "case6", 2, ledger)
            assert ledger.copies("case6") == 2  # no complete extra copy
            runs = printer.get(CP + "/history/get")
            assert any(r["job_name"] == "case6" and r["result"] != "success" for r in runs), runs
        finally:
            for n in nodes:
                n.host.kill_all()


assert PORT and SECRET  # the nodes of tests/test_lan_chaos.py, reused here
