"""Three `lanqueue serve` processes on loopback find each other by mDNS alone (no --peer)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests

from conftest import API_KEY, CP, free_port

pytestmark = pytest.mark.slow


def test_three_nodes_find_each_other_by_mdns_and_show_peers_in_state(tmp_path):
    ports = [free_port() for _ in range(3)]
    procs = []
    try:
        for i, port in enumerate(ports):
            log = open(tmp_path / f"n{i}.log", "wb")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "lanqueue.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                 "--data-dir", str(tmp_path / f"n{i}"), "--api-key", API_KEY, "--name", f"printer-{i}",
                 "--interface", "127.0.0.1", "--lan", "farm=shared-secret-1", "--virtual-speed", "100"],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}))
        start = time.monotonic()
        h = {"X-Api-Key": API_KEY}

        def everyone_sees_everyone():
            for port in ports:
                try:
                    peers = requests.get(f"http://127.0.0.1:{port}/lanqueue/peers", headers=h, timeout=2).json()["peers"]
                except requests.RequestException:
                    return False
                if sorted(p["name"] for p in peers if p["status"] == "online") != sorted(
                        f"printer-{i}" for i, p2 in enumerate(ports) if p2 != port):
                    return False
            return True

        while not everyone_sees_everyone():
            assert time.monotonic() - start < 30, "nodes did not find each other"
            time.sleep(0.1)
        print(f"mesh of 3 lanqueue serve processes after {time.monotonic() - start:.1f} s")
        state = requests.get(f"http://127.0.0.1:{ports[0]}{CP}/state/get", headers=h).json()
        farm = next(q for q in state["queues"] if q["name"] == "farm")
        assert sorted(p["name"] for p in farm["peers"].values()) == ["printer-1", "printer-2"]
        assert all(p["status"] == "IDLE" and p["profile"]["name"] == "Generic" for p in farm["peers"].values())
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
