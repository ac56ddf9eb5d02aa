"""LAN queues across real node processes on loopback (static peers, real HTTP, real SQLite)."""

from __future__ import annotations

import pytest
import requests

from conftest import CP
from lan_helpers import (
    H, cluster_ports, gcode, get, lan_args, lan_jobs, no_wait, peers_online, post, upload, wait,
)

pytestmark = pytest.mark.slow


def test_job_submitted_on_one_node_prints_on_another(node_process):
    pa, pb = cluster_ports(2)
    a = node_process(lan_args([pa, pb], pa), port=pa)
    b = node_process(lan_args([pa, pb], pb), port=pb)
    wait(lambda: peers_online(a, 1) and peers_online(b, 1), what="peers online")
    no_wait(b)
    upload(a, "part.gcode", gcode("PART"))
    added = post(a, CP + "/set/add", data={"path": "part.gcode", "queue": "farm", "jobDraft": "false", "count": "2"})
    job_id = added["job_id"]
    assert isinstance(job_id, str) and len(job_id) == 36
    wait(lambda: any(j["id"] == job_id for j in lan_jobs(b)), what="replicated to b")
    post(b, CP + "/set_active", data={"active": "true"})
    wait(lambda: any(j["id"] == job_id and j["remaining"] == 0 for j in lan_jobs(a)), timeout=60, what="printed")
    job = next(j for j in lan_jobs(b) if j["id"] == job_id)
    assert job["sets"][0]["completed"] == 2 and job["remaining"] == 0
    history = get(b, CP + "/history/get")
    assert [h["result"] for h in history] == ["success", "success"]
    assert get(a, CP + "/history/get") == []  # a never printed it


def test_peer_without_secret_can_neither_read_nor_change(node_process):
    pa, pb = cluster_ports(2)
    a = node_process(lan_args([pa, pb], pa), port=pa)
    intruder = node_process(lan_args([pa, pb], pb, secret="wrong-secret-9"), port=pb)
    upload(a, "p.gcode", gcode("P"))
    post(a, CP + "/set/add", data={"path": "p.gcode", "queue": "farm", "jobDraft": "false"})
    import time
    time.sleep(3)  # heartbeats and anti-entropy have had their chance
    assert lan_jobs(intruder) == []
    # unsigned requests to the peer protocol are refused and change nothing
    r = requests.post(a.url + "/lanqueue/peer/v1/message", data=b'{"type":"RecordPush","sender":"x","records":[]}')
    assert r.status_code == 403
    r = requests.get(a.url + "/lanqueue/peer/v1/files/" + "0" * 64)
    assert r.status_code == 403
    assert len(lan_jobs(a)) == 1
