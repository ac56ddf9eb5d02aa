"""`lanqueue demo` as a user runs it: a real process that starts real node processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from lanqueue.demo import API_KEY, QUEUE, SAMPLES, prints_left

pytestmark = pytest.mark.slow

CP = "/plugin/continuousprint"
H = {"X-Api-Key": API_KEY}


def free_ports(n: int) -> int:
    """A base port with n consecutive free ports after it."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n > 65535:
            continue
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of free ports")


def serve_pids(ports: list[int]) -> list[int]:
    """Processes that are a `lanqueue serve` on one of these ports (from /proc)."""
    wanted = {str(p) for p in ports}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in args]
        if "serve" in words and "--port" in words and any("lanqueue" in w for w in words):
            port = words[words.index("--port") + 1] if words.index("--port") + 1 < len(words) else ""
            if port in wanted:
                try:
                    state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                except OSError:
                    continue
                if state != "Z":
                    found.append(int(entry.name))
    return found


def demo_jobs(port: int) -> list[dict]:
    r = requests.get(f"http://127.0.0.1:{port}{CP}/state/get", headers=H, timeout=5)
    r.raise_for_status()
    q = next((q for q in r.json()["queues"] if q["name"] == QUEUE), None)
    return q["jobs"] if q else []


def history(port: int) -> list[dict]:
    r = requests.get(f"http://127.0.0.1:{port}{CP}/history/get", headers=H, timeout=5)
    r.raise_for_status()
    return r.json()


def test_demo_prints_the_samples_and_stops_cleanly_on_ctrl_c(tmp_path):
    nodes = 3
    base = free_ports(nodes)
    ports = list(range(base, base + nodes))
    out = tmp_path / "demo.out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    with open(out, "wb") as f:
        demo = subprocess.Popen(
            [sys.executable, "-m", "lanqueue.cli", "demo", "--nodes", str(nodes), "--base-port", str(base),
             "--speed", "200"],
            stdout=f, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
        )
    try:
        total = sum(copies for _, copies in SAMPLES)
        deadline = time.monotonic() + 150
        done = False
        last = None
        while time.monotonic() < deadline and not done:
            assert demo.poll() is None, f"demo exited early:\n{out.read_text()}"
            try:
                views = [demo_jobs(p) for p in ports]
                printed = sum(1 for p in ports for h in history(p) if h["result"] == "success")
                last = (views, printed)
                done = (
                    all(len(v) == len(SAMPLES) for v in views)
                    and all(prints_left(j) == 0 and not j["acquired"] for v in views for j in v)
                    and printed == total
                )
            except requests.RequestException:
                pass
            time.sleep(0.5)
        assert done, f"jobs not complete; last view {last}\n{out.read_text()[-3000:]}"
        # jobs came from different nodes, and more than one printer printed
        homes = {j["home"] for j in demo_jobs(ports[0])}
        assert len(homes) == min(nodes, len(SAMPLES))
        assert sum(1 for p in ports if history(p)) >= 2
        text = out.read_text()
        for p in ports:
            assert f"127.0.0.1:{p}/?apikey={API_KEY}" in text
        assert len(serve_pids(ports)) == nodes
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 0, out.read_text()[-3000:]
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert serve_pids(ports) == [], "node processes left behind"
    for p in ports:
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{p}/api/version", headers=H, timeout=2)
    assert "all nodes stopped" in out.read_text()


def test_demo_stops_every_node_on_sigterm_mid_print(tmp_path):
    nodes = 2
    base = free_ports(nodes)
    ports = list(range(base, base + nodes))
    out = tmp_path / "demo.out"
    with open(out, "wb") as f:
        demo = subprocess.Popen(
            [sys.executable, "-m", "lanqueue.cli", "demo", "--nodes", str(nodes), "--base-port", str(base),
             "--speed", "5"],
            stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 60
        printing = False
        while time.monotonic() < deadline and not printing:
            assert demo.poll() is None, f"demo exited early:\n{out.read_text()}"
            try:
                printing = any(
                    requests.get(f"http://127.0.0.1:{p}/api/job", headers=H, timeout=5).json()["state"] == "Printing"
                    for p in ports
                )
            except requests.RequestException:
                pass
            time.sleep(0.2)
        assert printing, out.read_text()
        assert len(serve_pids(ports)) == nodes
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(60) == 0, out.read_text()[-3000:]
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert serve_pids(ports) == [], "node processes left behind"
    assert "killed (did not stop in time)" not in out.read_text()  # every node stopped on its own
