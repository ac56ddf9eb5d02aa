"""LAN queues across real node processes on loopback (static peers, real HTTP, real SQLite)."""

from __future__ import annotations

import pytest
import requests

from conftest import CP
from lan_helpers import (
    H, cluster_ports, gcode, get, lan_args, lan_jobs, no_wait, peers_online, post, upload, wait,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def lan_pair(node_process):
    """Two nodes on loopback sharing the LAN queue `farm`, each online for the other."""
    pa, pb = cluster_ports(2)
    a = node_process(lan_args([pa, pb], pa), port=pa)
    b = node_process(lan_args([pa, pb], pb), port=pb)
    wait(lambda: peers_online(a, 1) and peers_online(b, 1), what="peers online")
    return a, b


def test_job_submitted_on_one_node_prints_on_another(lan_pair):
    a, b = lan_pair
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


def test_switched_off_home_jobs_wait_then_adopted_jobs_print(lan_pair):
    a, b = lan_pair
    no_wait(b)
    upload(a, "from_a.gcode", gcode("FROM_A"))
    upload(b, "from_b.gcode", gcode("FROM_B"))
    ja = post(a, CP + "/set/add", data={"path": "from_a.gcode", "queue": "farm", "jobDraft": "false"})["job_id"]
    wait(lambda: any(j["id"] == ja for j in lan_jobs(b)), what="replicated")
    # b has fetched the file ahead of time (prefetch), so it can print it after adoption
    wait(lambda: any(f["path"].startswith("lan/") for f in get(b, "/api/files")["files"]), what="prefetched")
    a.kill()  # the printer is switched off, not shut down: no drain
    jb = post(b, CP + "/set/add", data={"path": "from_b.gcode", "queue": "farm", "jobDraft": "false"})["job_id"]
    post(b, CP + "/set_active", data={"active": "true"})
    # b keeps printing what it is home of ...
    wait(lambda: any(j["id"] == jb and j["remaining"] == 0 for j in lan_jobs(b)), timeout=60, what="b's own job printed")
    # ... while a's job is visible but waits for its home, and says why
    job = wait(lambda: next((j for j in lan_jobs(b) if j["id"] == ja and not j["home_online"]), None), what="home offline")
    assert job["remaining"] == 1 and "waiting for its home" in job["waiting_reason"]
    adopted = post(b, "/lanqueue/lan/adopt", data={"node": job["home"]})
    assert adopted["adopted"] == 1
    wait(lambda: any(j["id"] == ja and j["remaining"] == 0 for j in lan_jobs(b)), timeout=60 + 10, what="adopted job printed")
    job = next(j for j in lan_jobs(b) if j["id"] == ja)
    assert job["epoch"] == 2 and job["home"] != a.data_dir.name


def test_graceful_stop_drains_jobs_to_a_live_peer(lan_pair):
    a, b = lan_pair
    no_wait(b)
    upload(a, "d.gcode", gcode("D"))
    jid = post(a, CP + "/set/add", data={"path": "d.gcode", "queue": "farm", "jobDraft": "false"})["job_id"]
    wait(lambda: any(j["id"] == jid for j in lan_jobs(b)), what="replicated")
    wait(lambda: any(f["path"].startswith("lan/") for f in get(b, "/api/files")["files"]), what="prefetched")
    a.stop()  # SIGTERM: drain before exit
    b_id = get(b, "/lanqueue/peers")["node_id"]
    job = wait(lambda: next((j for j in lan_jobs(b) if j["id"] == jid and j["home"] == b_id), None), what="drained")
    assert job["epoch"] == 2 and job["home_online"]
    post(b, CP + "/set_active", data={"active": "true"})
    wait(lambda: any(j["id"] == jid and j["remaining"] == 0 for j in lan_jobs(b)), timeout=60, what="printed after drain")


def test_all_nodes_restarted_queue_comes_back_complete(lan_pair):
    a, b = lan_pair
    upload(a, "x.gcode", gcode("X"))
    upload(b, "y.gcode", gcode("Y"))
    ids = {post(a, CP + "/set/add", data={"path": "x.gcode", "queue": "farm", "count": "3"})["job_id"],
           post(b, CP + "/set/add", data={"path": "y.gcode", "queue": "farm"})["job_id"]}
    wait(lambda: {j["id"] for j in lan_jobs(a)} == ids == {j["id"] for j in lan_jobs(b)}, what="replicated")
    before = sorted((j["id"], j["name"], j["count"], j["home"]) for j in lan_jobs(a))
    a.kill()
    b.kill()
    a.start()  # alone after a power cut: still shows the whole queue
    assert sorted((j["id"], j["name"], j["count"], j["home"]) for j in lan_jobs(a)) == before
    b.start()
    wait(lambda: peers_online(a, 1), what="peers online again")
    assert sorted((j["id"], j["name"], j["count"], j["home"]) for j in lan_jobs(b)) == before


def test_tampered_file_is_rejected(lan_pair):
    a, b = lan_pair
    no_wait(b)
    upload(a, "t.gcode", gcode("GENUINE"))
    (a.data_dir / "files" / "t.gcode").write_text(gcode("TAMPERED"))  # corrupted after upload
    jid = post(a, CP + "/set/add", data={"path": "t.gcode", "queue": "farm", "jobDraft": "false"})["job_id"]
    wait(lambda: any(j["id"] == jid for j in lan_jobs(b)), what="replicated")
    post(b, CP + "/set_active", data={"active": "true"})
    import time
    time.sleep(4)
    assert get(b, CP + "/history/get") == []  # never printed the wrong bytes
    assert not any(f["path"].startswith("lan/") for f in get(b, "/api/files")["files"])
    assert "does not match its digest" in b.log.read_text()


def test_lan_jobs_are_edited_from_any_node_and_move_between_queues(lan_pair):
    import json

    a, b = lan_pair
    upload(a, "m.gcode", gcode("M"))
    local = post(a, CP + "/set/add", data={"path": "m.gcode", "count": "2", "jobName": "Mover"})
    # local -> LAN, as the original's page does it
    post(a, CP + "/job/mv", data={"id": str(local["job_id"]), "after_id": "", "src_queue": "local", "dest_queue": "farm"})
    assert all(j["name"] != "Mover" for j in get(a, CP + "/state/get")["queues"][0]["jobs"])
    job = wait(lambda: next((j for j in lan_jobs(b) if j["name"] == "Mover"), None), what="replicated")
    assert job["sets"][0]["count"] == 2 and job["draft"] is True
    # b is not the home: its edits are forwarded to a
    post(b, CP + "/job/edit", data={"json": json.dumps({"queue": "farm", "id": job["id"], "name": "Renamed", "draft": False})})
    wait(lambda: any(j["name"] == "Renamed" and not j["draft"] for j in lan_jobs(a)), what="edit at home")
    post(b, CP + "/job/edit", data={"json": json.dumps({"queue": "farm", "id": job["id"], "count": 3})})
    wait(lambda: any(j["count"] == 3 and j["remaining"] == 3 for j in lan_jobs(a)), what="count edited at home")
    r = requests.post(b.url + CP + "/job/edit", headers=H, data={"json": json.dumps({"queue": "farm", "id": job["id"], "sets": []})})
    assert r.status_code == 400 and "error" in r.json()
    assert post(b, CP + "/job/reset", data={"queue": "farm", "job_ids[]": job["id"]}) == {"num_updated": 1}
    # LAN -> local on b: the file comes along, the LAN job is gone everywhere
    post(b, CP + "/job/mv", data={"id": job["id"], "after_id": "", "src_queue": "farm", "dest_queue": "local"})
    wait(lambda: not lan_jobs(a) and not lan_jobs(b), what="removed from the LAN queue")
    moved = get(b, CP + "/state/get")["queues"][0]["jobs"]
    assert [(j["name"], j["count"], j["sets"][0]["count"], j["sets"][0]["missing_file"]) for j in moved] == [("Renamed", 3, 2, False)]
    # delete from a non-home node
    upload(a, "r.gcode", gcode("R"))
    rid = post(a, CP + "/set/add", data={"path": "r.gcode", "queue": "farm"})["job_id"]
    wait(lambda: any(j["id"] == rid for j in lan_jobs(b)), what="replicated")
    assert post(b, CP + "/job/rm", data={"queue": "farm", "job_ids[]": rid}) == {"jobs_deleted": 1}
    wait(lambda: not lan_jobs(a), what="deleted at home")


def test_returning_home_does_not_drain_jobs_adopted_meanwhile(node_process):
    """A home switched off, its jobs adopted, then switched on and shut down at once: its drain must
    not hand the adopted jobs to a third node (that would make two homes at one epoch)."""
    ports = cluster_ports(3)
    a, b, c = (node_process(lan_args(ports, p), port=p) for p in ports)
    wait(lambda: all(peers_online(n, 2) for n in (a, b, c)), what="mesh")
    upload(a, "j.gcode", gcode("J"))
    jobs = [post(a, CP + "/set/add", data={"path": "j.gcode", "queue": "farm"})["job_id"] for _ in range(2)]
    wait(lambda: all(len(lan_jobs(n)) == 2 for n in (b, c)), what="replicated")
    a_id = get(a, "/lanqueue/peers")["node_id"]
    a.kill()
    wait(lambda: not any(p["status"] == "online" for p in get(b, "/lanqueue/peers")["peers"] if p["node_id"] == a_id), what="a offline")
    assert post(b, "/lanqueue/lan/adopt", data={"node": a_id})["adopted"] == 2
    b_id = get(b, "/lanqueue/peers")["node_id"]
    wait(lambda: all(j["home"] == b_id for j in lan_jobs(c)), what="adoption pushed to c")
    a.start()
    wait(lambda: peers_online(a, 2), what="a back")
    a.stop()  # SIGTERM right away: drain
    for node in (b, c):
        homes = {j["id"]: (j["home"], j["epoch"]) for j in lan_jobs(node)}
        assert homes == {jid: (b_id, 2) for jid in jobs}, homes


def test_adopt_refuses_a_name_that_matches_several_gone_nodes_and_changes_nothing(node_process, tmp_path):
    """`lanqueue adopt PREFIX` must not take over the jobs of every node whose id starts alike:
    an ambiguous name is a 400 and adopts nothing; the whole id then adopts exactly one node."""
    pa1, pa2, pb = ports = cluster_ports(3)
    ids = {pa1: "abcd0000-0000-4000-8000-000000000001", pa2: "abcd0000-0000-4000-8000-000000000002"}
    gone = []
    for port in (pa1, pa2):
        data = tmp_path / f"gone{port}"
        data.mkdir()
        (data / "node_id").write_text(ids[port])
        gone.append(node_process(lan_args(ports, port), data_dir=data, port=port))
    b = node_process(lan_args(ports, pb), port=pb)
    wait(lambda: peers_online(b, 2), what="peers online")
    for n, name in zip(gone, ("g1.gcode", "g2.gcode")):
        upload(n, name, gcode(name))
        post(n, CP + "/set/add", data={"path": name, "queue": "farm", "jobDraft": "true"})
    wait(lambda: len(lan_jobs(b)) == 2, what="replicated")
    for n in gone:
        n.kill()
    wait(lambda: all(not j["home_online"] for j in lan_jobs(b)), what="homes offline")
    r = requests.post(b.url + "/lanqueue/lan/adopt", headers=H, data={"node": "abcd0000"}, timeout=10)
    assert r.status_code == 400 and "names 2 nodes" in r.json()["error"]
    assert sorted((j["home"], j["epoch"]) for j in lan_jobs(b)) == sorted((i, 1) for i in ids.values())
    assert post(b, "/lanqueue/lan/adopt", data={"node": ids[pa1]})["adopted"] == 1
    homes = {j["home"] for j in lan_jobs(b)}
    assert ids[pa1] not in homes and ids[pa2] in homes


def test_acquired_by_names_the_holder_as_a_key_of_peers(lan_pair):
    """`acquired_by_` is the holder's node id on every node, so a client can look it up in the
    queue's `peers` (keyed by node id) or compare it with `addr`; it used to be the node id on
    the holder itself and the display name elsewhere."""
    a, b = lan_pair
    no_wait(b)
    upload(a, "slow.gcode", gcode("SLOW", moves=3000))
    jid = post(a, CP + "/set/add", data={"path": "slow.gcode", "queue": "farm", "jobDraft": "false"})["job_id"]
    wait(lambda: any(j["id"] == jid for j in lan_jobs(b)), what="replicated")
    post(b, CP + "/set_active", data={"active": "true"})
    b_id = get(b, "/lanqueue/peers")["node_id"]
    job = wait(lambda: next((j for j in lan_jobs(a) if j["id"] == jid and j["acquired"]), None), what="acquired")
    farm = next(q for q in get(a, CP + "/state/get")["queues"] if q["name"] == "farm")
    assert job["acquired_by_"] == b_id and b_id in farm["peers"]
    assert job["acquired_by_name"] == farm["peers"][b_id]["name"]
    on_b = wait(lambda: next((j for j in lan_jobs(b) if j["id"] == jid and j["acquired"]), None), what="acquired on b")
    assert on_b["acquired_by_"] == b_id
    post(b, CP + "/set_active", data={"active": "false"})


def test_public_hello_does_not_say_what_is_printed(lan_pair):
    a, b = lan_pair
    no_wait(b)
    slow = "\n".join(["M117 S", "G28"] + [f"G1 X{i % 50} Y{i % 50} F60" for i in range(300)]) + "\n"
    upload(a, "secret-part.gcode", slow)
    post(a, CP + "/set/add", data={"path": "secret-part.gcode", "queue": "farm", "jobDraft": "false"})
    post(b, CP + "/set_active", data={"active": "true"})
    wait(lambda: get(b, "/api/job")["state"] == "Printing", what="b printing")
    hello = requests.get(b.url + "/lanqueue/peer/v1/hello").text  # no key, no secret
    assert "secret-part" not in hello and "Printing" in hello
    # members see it through the LAN records
    peers = next(q for q in get(a, CP + "/state/get")["queues"] if q["name"] == "farm")["peers"]
    assert [p["run"] for p in peers.values()] == ["secret-part"]
