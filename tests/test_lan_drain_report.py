"""Issue 11 (7): `drain` says exactly what was handed over.

Two real nodes on loopback. The peer a drain hands its jobs to is frozen (SIGSTOP: still listed
as online, but it answers nothing): the drain must not claim the jobs were moved. Once the peer
thaws, it learns that it is their home from the draining node, and says so.
"""

from __future__ import annotations

import os
import signal

import requests
from conftest import CP
from lan_helpers import H, cluster_ports, gcode, get, lan_args, lan_jobs, peers_online, post, upload, wait


def test_drain_to_a_peer_that_does_not_answer_reports_nothing_moved(node_process) -> None:
    pa, pb = cluster_ports(2)
    a = node_process(lan_args([pa, pb], pa), port=pa)
    b = node_process(lan_args([pa, pb], pb), port=pb)
    wait(lambda: peers_online(a, 1) and peers_online(b, 1), what="peers online")
    upload(a, "d1.gcode", gcode("D1"))
    upload(a, "d2.gcode", gcode("D2"))
    ids = {post(a, CP + "/set/add", data={"path": p, "queue": "farm"})["job_id"] for p in ("d1.gcode", "d2.gcode")}
    wait(lambda: {j["id"] for j in lan_jobs(b)} >= ids, what="replicated")
    b_id = get(b, "/lanqueue/peers")["node_id"]
    assert b.proc is not None
    os.kill(b.proc.pid, signal.SIGSTOP)
    try:
        # the catch-up round and the hand-over each wait for the peer's timeout (5 s)
        r = requests.post(a.url + "/lanqueue/lan/drain", headers=H, timeout=40)
        assert r.status_code == 200, r.text
        result = r.json()
    finally:
        os.kill(b.proc.pid, signal.SIGCONT)
    assert result["moved"] == 0, result  # nobody confirmed taking them
    assert result["unconfirmed"] == 2, result
    # b, thawed, learns from a (anti-entropy) that it is the home of both jobs now.
    wait(lambda: sorted((j["home"], j["epoch"]) for j in lan_jobs(b) if j["id"] in ids) == [(b_id, 2)] * 2,
         timeout=60, what="the new home learnt of its jobs")
