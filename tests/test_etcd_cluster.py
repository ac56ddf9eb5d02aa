"""Etcd queues with real node processes (virtual printers) and real etcd members.

Every test checks the same guarantee as the LAN queue tests: each job is printed exactly its
count (history `success` rows across the nodes == count == the completions etcd counted), or an
extra copy shows as a conflict with its reason.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from conftest import CP
from etcd_server import start_cluster
from lan_helpers import cluster_ports, gcode, get, lan_jobs, no_wait, post, upload, wait

pytestmark = pytest.mark.slow


@pytest.fixture
def etcd(tmp_path: Path):  # type: ignore[no-untyped-def]
    cluster = start_cluster(tmp_path / "etcd")
    yield cluster
    cluster.stop()


def etcd_args(cluster, ttl: float = 6.0, lock_delay: float = 3.0, queue: str = "site") -> list[str]:  # type: ignore[no-untyped-def]
    hosts = ",".join(e.removeprefix("http://") for e in cluster.endpoints)
    return ["--lan", f"{queue}=etcd://{hosts}", "--lease-ttl", str(ttl), "--lock-delay", str(lock_delay)]


def successes(node, job_name: str) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for h in get(node, CP + "/history/get") if h["job_name"] == job_name and h["result"] == "success")


def a_lan_ready(node) -> bool:  # type: ignore[no-untyped-def]
    """A node that restarted first catches up with its LAN peers; /lanqueue/peers says when done."""
    standing = get(node, "/lanqueue/peers").get("lan_standing", {})
    return all(s.get("state") == "ok" for s in standing.values())


def job_of(node, job_id: str, queue: str = "site") -> dict:  # type: ignore[no-untyped-def]
    return next((j for j in lan_jobs(node, queue) if j["id"] == job_id), {})


def test_job_added_on_one_node_prints_across_both_exactly_its_count(etcd, node_process) -> None:  # type: ignore[no-untyped-def]
    a = node_process(etcd_args(etcd))
    b = node_process(etcd_args(etcd))
    for n in (a, b):
        no_wait(n)
    upload(a, "part.gcode", gcode("PART", moves=40))
    added = post(a, CP + "/set/add", data={"path": "part.gcode", "queue": "site", "jobDraft": "false",
                                           "count": "4", "jobName": "part"})
    job_id = added["job_id"]
    assert isinstance(job_id, str) and len(job_id) == 36
    wait(lambda: job_of(b, job_id), what="b sees the job")
    state = get(b, CP + "/state/get")
    site = next(q for q in state["queues"] if q["name"] == "site")
    assert site["addr"] and site["jobs"][0]["sets"][0]["id"] == f"{job_id}_0"
    for n in (a, b):
        post(n, CP + "/set_active", data={"active": "true"})
    wait(lambda: job_of(a, job_id).get("remaining") == 0, timeout=90, what="printed")
    wait(lambda: not job_of(a, job_id).get("acquired"), what="released")
    job = job_of(b, job_id)
    assert job["sets"][0]["completed"] == 4 and job["conflicts"] == []
    assert successes(a, "part") + successes(b, "part") == 4


def test_node_killed_mid_print_and_restarted(etcd, node_process, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = node_process(etcd_args(etcd, ttl=4, lock_delay=2))
    no_wait(a)
    upload(a, "slow.gcode", gcode("SLOW", moves=3000))
    job_id = post(a, CP + "/set/add", data={"path": "slow.gcode", "queue": "site", "jobDraft": "false",
                                            "count": "2", "jobName": "slow"})["job_id"]
    post(a, CP + "/set_active", data={"active": "true"})
    wait(lambda: job_of(a, job_id).get("acquired"), what="a prints")
    a.kill()
    a.start()  # same data dir and port: it gives its interrupted hold back at once
    no_wait(a)
    wait(lambda: job_of(a, job_id) and not job_of(a, job_id).get("acquired"), timeout=8,
         what="hold given back after restart (well before TTL + lock-delay)")
    post(a, CP + "/set_active", data={"active": "true"})
    wait(lambda: job_of(a, job_id).get("remaining") == 0, timeout=120, what="printed after restart")
    history = get(a, CP + "/history/get")
    assert [h["result"] for h in history if h["job_name"] == "slow"].count("success") == 2
    assert "aborted" in [h["result"] for h in history]
    assert job_of(a, job_id)["sets"][0]["completed"] == 2


def test_frozen_node_beyond_its_lease_prints_no_counted_extra_copy(etcd, node_process) -> None:  # type: ignore[no-untyped-def]
    a = node_process(etcd_args(etcd, ttl=3, lock_delay=2))
    b = node_process(etcd_args(etcd, ttl=3, lock_delay=2))
    for n in (a, b):
        no_wait(n)
    upload(a, "long.gcode", gcode("LONG", moves=1500))
    job_id = post(a, CP + "/set/add", data={"path": "long.gcode", "queue": "site", "jobDraft": "false",
                                            "count": "1", "jobName": "long"})["job_id"]
    wait(lambda: job_of(b, job_id), what="b sees it")
    # b fetched the file ahead of time, so the copy outlives a
    wait(lambda: any(f["path"].startswith("etcd/") for f in get(b, "/api/files")["files"]), what="prefetched")
    post(a, CP + "/set_active", data={"active": "true"})
    wait(lambda: job_of(a, job_id).get("acquired"), what="a prints")
    a.proc.send_signal(signal.SIGSTOP)
    post(b, CP + "/set_active", data={"active": "true"})
    try:
        wait(lambda: job_of(b, job_id).get("remaining") == 0, timeout=60, what="b prints the copy a held")
    finally:
        a.proc.send_signal(signal.SIGCONT)
    time.sleep(4)  # a thaws: whatever it does now must not count a second copy
    job = job_of(b, job_id)
    assert job["remaining"] == 0 and job["sets"][0]["completed"] == 1
    # a's copy either ended without success (lease lapsed by its own clock) or, if it reported,
    # was refused by fencing and shows as a conflict
    a_success = successes(a, "long")
    wait(lambda: len(job_of(b, job_id)["conflicts"]) >= a_success, timeout=20, what="late report shown as conflict")


def test_job_moves_between_an_etcd_queue_and_a_lan_queue(etcd, node_process) -> None:  # type: ignore[no-untyped-def]
    (port,) = cluster_ports(1)
    a = node_process(etcd_args(etcd) + ["--lan", "farm=farm-secret-1"], port=port)
    upload(a, "m.gcode", gcode("M"))
    job_id = post(a, CP + "/set/add", data={"path": "m.gcode", "queue": "site", "jobDraft": "true",
                                            "count": "2", "jobName": "mover"})["job_id"]
    wait(lambda: job_of(a, job_id), what="in the etcd queue")
    wait(lambda: a_lan_ready(a), what="the LAN queue ready")
    post(a, CP + "/job/mv", data={"id": job_id, "src_queue": "site", "dest_queue": "farm"})
    moved = wait(lambda: next((j for j in lan_jobs(a, "farm") if j["name"] == "mover"), None), what="in the LAN queue")
    assert not job_of(a, job_id)
    post(a, CP + "/job/mv", data={"id": moved["id"], "src_queue": "farm", "dest_queue": "site"})
    back = wait(lambda: next((j for j in lan_jobs(a, "site") if j["name"] == "mover"), None), what="back in etcd")
    assert back["count"] == 1 and back["sets"][0]["count"] == 2 and back["sets"][0]["path"].endswith("m.gcode")
    assert not any(j["name"] == "mover" for j in lan_jobs(a, "farm"))
    names = [q["name"] for q in get(a, CP + "/state/get")["queues"]]
    assert {"local", "site", "farm"} <= set(names)


def test_with_etcd_auth_the_node_uses_its_credentials_and_nothing_is_open(etcd, node_process, tmp_path: Path,
                                                                          monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import shutil
    import subprocess

    from etcd_server import enable_auth

    enable_auth(etcd, "farm", "farm-pass-123")
    config = tmp_path / "node.toml"
    config.write_text('etcd_user = "farm"\n')  # the password comes from the environment
    monkeypatch.setenv("LANQUEUE_ETCD_PASSWORD", "farm-pass-123")
    a = node_process(etcd_args(etcd) + ["--config", str(config)])
    no_wait(a)
    upload(a, "auth.gcode", gcode("AUTH"))
    job_id = post(a, CP + "/set/add", data={"path": "auth.gcode", "queue": "site", "jobDraft": "false",
                                            "jobName": "auth"})["job_id"]
    post(a, CP + "/set_active", data={"active": "true"})
    wait(lambda: job_of(a, job_id).get("remaining") == 0, timeout=60, what="printed with credentials")
    ctl = shutil.which("etcdctl")
    assert ctl is not None
    ep = ["--endpoints", ",".join(etcd.endpoints)]
    env = {"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}
    anonymous = subprocess.run([ctl, *ep, "get", "--prefix", "/lanqueue/"], capture_output=True, text=True, env=env, check=False)
    assert anonymous.returncode != 0 and "lanqueue" not in anonymous.stdout
    write = subprocess.run([ctl, *ep, "put", "/lanqueue/q/site/job/x", "{}"], capture_output=True, text=True, env=env, check=False)
    assert write.returncode != 0
    allowed = subprocess.run([ctl, *ep, "--user", "farm:farm-pass-123", "get", "--prefix", "--keys-only",
                              "/lanqueue/q/site/job/"], capture_output=True, text=True, env=env, check=False)
    assert allowed.returncode == 0 and job_id in allowed.stdout


def test_over_tls_with_the_farms_ca(node_process, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from etcd_server import make_tls

    ca, cert, key = make_tls(tmp_path / "tls")
    cluster = start_cluster(tmp_path / "etcd", tls=(cert, key))
    try:
        hosts = ",".join(e.removeprefix("https://") for e in cluster.endpoints)
        a = node_process(["--lan", f"site=etcds://{hosts}", "--etcd-ca", str(ca)])
        no_wait(a)
        upload(a, "tls.gcode", gcode("TLS"))
        job_id = post(a, CP + "/set/add", data={"path": "tls.gcode", "queue": "site", "jobDraft": "false",
                                                "jobName": "tls"})["job_id"]
        post(a, CP + "/set_active", data={"active": "true"})
        wait(lambda: job_of(a, job_id).get("remaining") == 0, timeout=60, what="printed over TLS")
        site = next(q for q in get(a, CP + "/state/get")["queues"] if q["name"] == "site")
        assert site["link"]["reachable"] and site["link"]["endpoints"][0].startswith("https://")
        # without the CA the certificate is not trusted: the queue is unreachable, nothing starts
        b = node_process(["--lan", f"site=etcds://{hosts}"])
        wait(lambda: "certificate" in (next(q for q in get(b, CP + "/state/get")["queues"]
                                            if q["name"] == "site")["link"]["error"] or ""),
             what="b refuses the unknown certificate")
    finally:
        cluster.stop()
