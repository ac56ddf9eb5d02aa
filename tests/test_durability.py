"""Nothing acknowledged is lost: writes answered 200 survive kill -9, and concurrent writers
leave the queue consistent (a real `lanqueue serve` process, many `requests` clients)."""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from conftest import API_KEY, CP

H = {"X-Api-Key": API_KEY}


def local_jobs(url: str) -> list[dict]:
    r = requests.get(url + CP + "/state/get", headers=H, timeout=30)
    assert r.status_code == 200
    return r.json()["queues"][0]["jobs"]


def test_acknowledged_sets_survive_kill_9(node_process):
    node = node_process()
    acked: list[tuple[str, int]] = []  # (path, job_id) of every set/add answered 200
    failures: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(tid: int) -> None:
        session = requests.Session()
        session.headers.update(H)
        job_id = ""
        i = 0
        while not stop.is_set():
            path = f"w{tid}_{i}.gcode"
            # every third set opens a new job, the others join the thread's current one
            data = {"path": path, "count": "2", "job": "" if i % 3 == 0 else str(job_id), "jobName": f"w{tid}"}
            try:
                r = session.post(node.url + CP + "/set/add", data=data, timeout=10)
            except requests.RequestException:
                return  # the node is gone: this write was never acknowledged
            if r.status_code == 200:
                body = r.json()
                job_id = body["job_id"]
                assert body["set_"]["path"] == path
                with lock:
                    acked.append((path, job_id))
            else:  # collected and asserted below: an exception here would die with the thread
                failures.append(f"set/add answered {r.status_code}: {r.text[:300]}")
                return
            i += 1

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(acked) < 150 and time.monotonic() < deadline:
        time.sleep(0.01)
    node.kill()  # SIGKILL, mid-stream
    stop.set()
    for t in threads:
        t.join(15)
    assert not any(t.is_alive() for t in threads)
    assert not failures, failures[:3]
    with lock:
        acknowledged = list(acked)
    assert len(acknowledged) >= 150, "too few writes before the kill to mean anything"

    node.start()
    jobs = local_jobs(node.url)
    where = {s["path"]: j["id"] for j in jobs for s in j["sets"]}
    lost = [p for p, _ in acknowledged if p not in where]
    assert not lost, f"{len(lost)} acknowledged sets lost after kill -9, e.g. {lost[:5]}"
    moved = [(p, jid, where[p]) for p, jid in acknowledged if where[p] != jid]
    assert not moved, f"sets in another job than acknowledged: {moved[:5]}"
    paths = [s["path"] for j in jobs for s in j["sets"]]
    assert len(paths) == len(set(paths)), "a set was stored twice"
    for j in jobs:  # no half-written job: every job has its sets, counts are sound
        assert j["sets"], f"job {j['id']} has no sets"
        for s in j["sets"]:
            assert s["count"] == 2 and s["remaining"] == 2
    # and the node keeps working on the same data dir
    r = requests.post(node.url + CP + "/set/add", headers=H, data={"path": "after.gcode"}, timeout=10)
    assert r.status_code == 200


def test_concurrent_add_move_edit_keep_the_queue_consistent(node_process):
    node = node_process()
    url = node.url
    job_ids = []
    for n in range(5):
        r = requests.post(url + CP + "/set/add", headers=H, data={"path": f"seed{n}.gcode", "jobName": f"J{n}"}, timeout=10)
        job_ids.append(r.json()["job_id"])
    target = job_ids[0]
    added = []
    lock = threading.Lock()

    def client(seed: int) -> list[int]:
        rnd = random.Random(seed)
        session = requests.Session()
        session.headers.update(H)
        statuses = []
        for i in range(30):
            op = rnd.choice(["add", "add", "mv", "edit"])
            if op == "add":
                path = f"c{seed}_{i}.gcode"
                r = session.post(url + CP + "/set/add", data={"path": path, "job": str(target), "count": "3"}, timeout=30)
                if r.status_code == 200:
                    with lock:
                        added.append(path)
            elif op == "mv":
                jid, after = rnd.choice(job_ids), rnd.choice(job_ids + [""])
                if after == jid:
                    after = ""
                r = session.post(url + CP + "/job/mv", data={"id": str(jid), "after_id": str(after)}, timeout=30)
            else:
                count = rnd.randint(1, 9)
                doc = {"id": target, "count": count, "name": f"edited by {seed}"}
                r = session.post(url + CP + "/job/edit", data={"json": json.dumps(doc)}, timeout=30)
            statuses.append(r.status_code)
        return statuses

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(client, range(16)))
    assert all(s == 200 for statuses in results for s in statuses), results

    jobs = local_jobs(url)
    assert sorted(j["id"] for j in jobs) == sorted(job_ids)
    ranks = [j["rank"] for j in jobs]
    assert len(set(ranks)) == len(ranks), f"job ranks collide: {ranks}"
    assert ranks == sorted(ranks)
    job = next(j for j in jobs if j["id"] == target)
    paths = [s["path"] for s in job["sets"]]
    assert sorted(paths) == sorted(["seed0.gcode"] + added), "a set was lost or doubled"
    set_ranks = [s["rank"] for s in job["sets"]]
    assert len(set(set_ranks)) == len(set_ranks) and set_ranks == sorted(set_ranks)
    assert 0 <= job["remaining"] <= job["count"] and 1 <= job["count"] <= 9
    for s in job["sets"]:
        assert 0 <= s["remaining"] <= s["count"]


def test_acknowledged_uploads_survive_kill_9(node_process):
    import hashlib

    node = node_process()
    acked: dict[str, str] = {}
    failures: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def uploader(tid: int) -> None:
        session = requests.Session()
        session.headers.update(H)
        i = 0
        while not stop.is_set():
            content = (f"; {tid}/{i}\n".encode() + b"G1 X1 Y1\n" * 2000)
            try:
                r = session.post(node.url + "/api/files/local", files={"file": (f"u{tid}_{i}.gcode", content)}, timeout=10)
            except requests.RequestException:
                return
            if r.status_code != 201:  # collected and asserted below (a thread swallows exceptions)
                failures.append(f"upload answered {r.status_code}: {r.text[:300]}")
                return
            with lock:
                acked[r.json()["files"]["local"]["path"]] = hashlib.sha256(content).hexdigest()
            i += 1

    threads = [threading.Thread(target=uploader, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(acked) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    node.kill()
    stop.set()
    for t in threads:
        t.join(15)
    assert not any(t.is_alive() for t in threads)
    assert not failures, failures[:3]
    with lock:
        acknowledged = dict(acked)
    assert len(acknowledged) >= 40
    node.start()
    listing = requests.get(node.url + "/api/files", headers=H, timeout=10).json()["files"]
    on_disk = {f["path"]: f for f in listing}
    lost = [p for p in acknowledged if p not in on_disk]
    assert not lost, f"acknowledged uploads lost: {lost[:5]}"
    for path, digest in acknowledged.items():
        data = (node.data_dir / "files" / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, f"{path} is not what was uploaded"
        assert on_disk[path]["hash"] in (digest, None)
    # a half-received upload leaves nothing: every file on disk is a complete, acknowledged one
    # or the one the kill interrupted after it was put in place (then it is complete too)
    for path in on_disk:
        data = (node.data_dir / "files" / path).read_bytes()
        assert data.endswith(b"G1 X1 Y1\n") and len(data.splitlines()) == 2001, path
    assert not list((node.data_dir / "files" / ".tmp").iterdir())
