"""Helpers for multi-node LAN tests with real `lanqueue serve` processes."""

from __future__ import annotations

import json
import time

import requests

from conftest import API_KEY, CP, free_port

H = {"X-Api-Key": API_KEY}
NO_WAIT = {
    "scripts": {"clear": "G28 X"},
    "preprocessors": {},
    "events": {"continuousprint_success": [{"script": "clear", "preprocessor": ""}]},
}


def wait(predicate, timeout=30.0, step=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except requests.RequestException as e:
            last = e
            last = None
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"{what} not reached in {timeout} s")


def get(node, path):
    r = requests.get(node.url + path, headers=H, timeout=10)
    r.raise_for_status()
    return r.json()


def post(node, path, **kw):
    r = requests.post(node.url + path, headers=H, timeout=10, **kw)
    assert r.status_code < 300, f"{path}: {r.status_code} {r.text}"
    return r.json() if r.content else None


def lan_jobs(node, queue="farm"):
    state = get(node, CP + "/state/get")
    q = next((q for q in state["queues"] if q["name"] == queue), None)
    return q["jobs"] if q else []


def upload(node, name, body):
    r = requests.post(node.url + "/api/files/local", headers=H, files={"file": (name, body)}, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()


def gcode(tag, moves=5):
    return "\n".join([f"M117 {tag}", "G28"] + [f"G1 X{i} Y{i} F6000" for i in range(moves)]) + "\n"


def no_wait(node):
    post(node, CP + "/automation/edit", data={"json": json.dumps(NO_WAIT)})


def cluster_ports(n):
    return [free_port() for _ in range(n)]


def lan_args(ports, me, secret="farm-secret-1", ttl=None):
    args = ["--lan", f"farm={secret}"]
    for p in ports:
        if p != me:
            args += ["--peer", f"127.0.0.1:{p}"]
    if ttl is not None:
        args += ["--lease-ttl", str(ttl)]
    return args


def peers_online(node, n):
    peers = get(node, "/lanqueue/peers")["peers"]
    return sum(1 for p in peers if p.get("status") == "online") >= n
