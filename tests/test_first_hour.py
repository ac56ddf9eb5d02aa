"""A new user's first hour with the command line, as issue 13 found it: real `lanqueue` processes.

Each test is one thing a newcomer ran into: the version and defaults they could not see, a node
on another port the client did not find, a port in use that left a data folder behind, a link
that did not open, the demo that failed when started next to a checkout.
"""

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
from conftest import CP, free_port

LQ = [sys.executable, "-P", "-m", "lanqueue.cli"]  # -P: import the installed package, not ./lanqueue


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANQUEUE_")}
    return {**env, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **extra}


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LQ, *args], check=False, capture_output=True, text=True, timeout=60, env=env or clean_env(), cwd=cwd)


def wait_up(url: str, proc: subprocess.Popen[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the node exited"
        try:
            requests.get(url + "/api/version", timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise AssertionError(f"no answer from {url}")


def test_version_and_defaults_in_help() -> None:
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("lanqueue ") and r.stdout.split()[1][0].isdigit()
    r = run("serve", "--help")
    assert "(default: 5000)" in r.stdout and "(default: virtual)" in r.stdout
    r = run("demo", "--help")
    assert "(default: 3)" in r.stdout and "(default: 20.0)" in r.stdout


def test_a_port_in_use_writes_nothing_and_says_so(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run("serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp_path / "d"), "--no-mdns")
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "another lanqueue serve" in r.stderr
    assert "ready, printer" not in r.stdout + r.stderr and "API key" not in r.stdout
    assert not (tmp_path / "d").exists()


def test_client_finds_a_node_on_another_port_from_its_data_dir(tmp_path: Path) -> None:
    """Only LANQUEUE_DATA_DIR is given: the client reads the node's URL and key from there."""
    port = free_port()
    data = tmp_path / "data"
    proc = subprocess.Popen([*LQ, "serve", "--port", str(port), "--data-dir", str(data), "--no-mdns",
                             "--virtual-speed", "100"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env())
    try:
        first = proc.stdout.readline() + proc.stdout.readline()  # type: ignore[union-attr]
        key = (data / "api_key").read_text().strip()
        assert f"open http://localhost:{port}/?apikey={key}" in first  # a link that opens, key and all
        wait_up(f"http://127.0.0.1:{port}", proc)
        assert (data / "url").read_text().strip() == f"http://localhost:{port}"
        env = clean_env(LANQUEUE_DATA_DIR=str(data))
        samples = tmp_path / "samples"
        r = run("samples", str(samples), env=env)
        assert r.returncode == 0 and len(list(samples.glob("*.gcode"))) == 5
        r = run("add", str(samples / "cura.gcode"), "--count", "2", env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        state = requests.get(f"http://127.0.0.1:{port}{CP}/state/get", headers={"X-Api-Key": key}, timeout=5).json()
        job = state["queues"][0]["jobs"][0]
        assert job["draft"] is False and job["sets"][0]["count"] == 2
        r = run("status", env=env)
        assert r.returncode == 0 and "cura.gcode 2/2 (30m)" in r.stdout, r.stdout  # the slicer's estimate
        assert "click" not in r.stdout.lower() and "lanqueue start" in r.stdout  # what to type instead
    finally:
        proc.terminate()
        proc.wait(20)
    # a restart prints the link without the key (the key is printed once, when made)
    proc = subprocess.Popen([*LQ, "serve", "--port", str(port), "--data-dir", str(data), "--no-mdns"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env())
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert f"http://localhost:{port}/?apikey=" in line and key not in line
    finally:
        proc.terminate()
        proc.wait(20)


def test_without_a_key_the_error_names_the_folder_searched(tmp_path: Path) -> None:
    empty = tmp_path / "nothing-here"
    r = run("status", env=clean_env(LANQUEUE_DATA_DIR=str(empty)))
    assert r.returncode == 2
    assert str(empty / "api_key") in r.stderr and "lanqueue serve" in r.stderr


@pytest.mark.slow
def test_demo_starts_from_the_folder_that_holds_a_checkout(tmp_path: Path) -> None:
    """A `lanqueue/` folder without __init__.py in the current directory (a checkout's root seen
    from its parent) must not be what the demo's nodes import."""
    (tmp_path / "lanqueue").mkdir()
    (tmp_path / "lanqueue" / "README.md").write_text("a checkout\n")
    port = free_port()
    out = tmp_path / "demo.out"
    with open(out, "wb") as f:
        demo = subprocess.Popen([*LQ, "demo", "--nodes", "1", "--base-port", str(port), "--speed", "200"],
                                stdout=f, stderr=subprocess.STDOUT, env=clean_env(), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while True:  # the node process started and answers: it imported the installed package
            assert demo.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            try:
                if requests.get(f"http://127.0.0.1:{port}/api/version", headers={"X-Api-Key": "lanqueue-demo"},
                                timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        demo.send_signal(signal.SIGINT)
        demo.wait(60)
        assert "No module named" not in out.read_text()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()


def test_demo_on_a_port_in_use_says_which(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run("demo", "--nodes", "1", "--base-port", str(port), cwd=tmp_path)
    assert r.returncode == 2 and f"port(s) {port}" in r.stdout and "--base-port" in r.stdout


async def test_set_add_says_whether_the_job_is_a_draft(api) -> None:
    """A new job is a draft unless jobDraft=false (as the original); the answer says which, and
    a set added to an existing job reports that job's state."""
    r = await api.post(f"{CP}/set/add", data={"path": "a.gcode"})
    first = await r.json()
    assert r.status == 200 and first["draft"] is True
    r = await api.post(f"{CP}/set/add", data={"path": "b.gcode", "jobDraft": "false"})
    ready = await r.json()
    assert ready["draft"] is False
    r = await api.post(f"{CP}/set/add", data={"path": "c.gcode", "job": str(ready["job_id"]), "jobDraft": "true"})
    assert (await r.json())["draft"] is False  # the existing job's state, not the ignored flag


async def test_the_shipped_samples_print_on_the_virtual_printer(node_factory) -> None:
    """What `lanqueue samples` hands out and the demo prints: every file prints to the end
    (two of them switch tools, T0/T1) with the demo's no-wait bed clearing."""
    import asyncio
    import json

    import aiohttp

    from lanqueue.demo import NO_WAIT_AUTOMATION

    client, _ = await node_factory()
    r = await client.post(f"{CP}/automation/edit", data={"json": json.dumps(NO_WAIT_AUTOMATION)})
    assert r.status == 200
    samples = sorted((Path(__file__).resolve().parent.parent / "lanqueue" / "samples").glob("*.gcode"))
    assert len(samples) == 5
    for path in samples:
        data = aiohttp.FormData()
        data.add_field("file", path.read_bytes(), filename=path.name, content_type="application/octet-stream")
        assert (await client.post("/api/files/local", data=data)).status == 201
        r = await client.post(f"{CP}/set/add", data={"path": path.name, "jobDraft": "false"})
        assert r.status == 200
    assert (await client.post(f"{CP}/set_active", data={"active": "true"})).status == 200
    deadline = time.monotonic() + 60
    while True:
        history = await (await client.get(f"{CP}/history/get")).json()
        if len(history) == 5 and all(h["end"] for h in history):
            break
        assert time.monotonic() < deadline, history
        await asyncio.sleep(0.2)
    assert sorted(h["set_path"] for h in history) == [p.name for p in samples]
    assert {h["result"] for h in history} == {"success"}
