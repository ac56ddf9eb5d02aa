"""The command line as a user runs it: real `lanqueue` subprocesses against a real node."""

from __future__ import annotations

import subprocess
import sys

import requests

from conftest import API_KEY, CP


def lanqueue(node, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lanqueue.cli", *args, "--url", node.url, "--api-key", API_KEY],
        capture_output=True, text=True, timeout=60,
    )


def test_add_status_start_stop(node_process, tmp_path):
    node = node_process()
    gcode = tmp_path / "benchy.gcode"
    gcode.write_text("G28\nG1 X10 Y10\n" * 200)
    r = lanqueue(node, "add", str(gcode), "--count", "3", "--job", "Benchies")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "queued benchy.gcode x3" in r.stdout
    state = requests.get(node.url + CP + "/state/get", headers={"X-Api-Key": API_KEY}).json()
    job = state["queues"][0]["jobs"][0]
    assert job["name"] == "Benchies" and job["draft"] is False and job["sets"][0]["count"] == 3
    r = lanqueue(node, "status")
    assert r.returncode == 0 and "Benchies" in r.stdout and "queue local" in r.stdout
    r = lanqueue(node, "start")
    assert r.returncode == 0 and r.stdout.startswith("managing")
    r = lanqueue(node, "stop")
    assert r.returncode == 0 and r.stdout.startswith("not managing")


def test_errors_are_readable(node_process, tmp_path):
    node = node_process()
    r = lanqueue(node, "add", str(tmp_path / "missing.gcode"))
    assert r.returncode == 1 and "no such file" in r.stdout
    r = subprocess.run([sys.executable, "-m", "lanqueue.cli", "status", "--url", node.url, "--api-key", "wrong"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "403" in r.stdout
    r = lanqueue(node, "continue")
    assert r.returncode == 1 and "nothing is waiting" in r.stdout


def test_serve_rejects_bad_options(tmp_path):
    r = subprocess.run([sys.executable, "-m", "lanqueue.cli", "serve", "--port", "99999", "--data-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "out of range" in r.stderr


def test_generated_key_is_private_and_printed_once(tmp_path):
    from conftest import free_port

    port = free_port()
    cmd_key = tmp_path / "d" / "api_key"
    proc = subprocess.Popen([sys.executable, "-m", "lanqueue.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--data-dir", str(tmp_path / "d"), "--no-mdns"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = proc.stdout.readline() + proc.stdout.readline()
    finally:
        proc.kill()
        proc.wait()
    key = cmd_key.read_text().strip()
    assert key in first
    assert (cmd_key.stat().st_mode & 0o777) == 0o600
    proc = subprocess.Popen([sys.executable, "-m", "lanqueue.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--data-dir", str(tmp_path / "d"), "--no-mdns"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        again = proc.stdout.readline()
    finally:
        proc.kill()
        proc.wait()
    assert key not in again and cmd_key.read_text().strip() == key


def test_node_prints_through_a_virtual_printer_in_another_process(node_process, tmp_path):
    """`lanqueue virtual-printer` on a pty (with corrupted lines) and `lanqueue serve --printer PTY`."""
    import json
    import time

    printer = subprocess.Popen([sys.executable, "-m", "lanqueue.cli", "virtual-printer", "--speed", "500",
                                "--corrupt-rate", "0.05", "--seed", "7"], stdout=subprocess.PIPE, text=True)
    try:
        pty = printer.stdout.readline().strip()
        assert pty.startswith("/")
        node = node_process(["--printer", pty])
        h = {"X-Api-Key": API_KEY}
        body = "\n".join(["G28"] + [f"G1 X{i % 50} Y{i % 40} F6000" for i in range(300)]) + "\n"
        assert requests.post(node.url + "/api/files/local", headers=h, files={"file": ("p.gcode", body)}).status_code == 201
        requests.post(node.url + CP + "/automation/edit", headers=h, data={"json": json.dumps(
            {"scripts": {}, "preprocessors": {}, "events": {}})})
        requests.post(node.url + CP + "/set/add", headers=h, data={"path": "p.gcode", "count": "2", "jobDraft": "false"})
        requests.post(node.url + CP + "/set_active", headers=h, data={"active": "true"})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            history = requests.get(node.url + CP + "/history/get", headers=h).json()
            if [r["result"] for r in history] == ["success", "success"]:
                break
            time.sleep(0.1)
        assert [r["result"] for r in history] == ["success", "success"]
        assert requests.get(node.url + "/api/connection", headers=h).json()["current"]["port"] == pty
    finally:
        printer.terminate()
        printer.wait(10)


def test_drain_without_a_live_peer_says_the_jobs_stay(node_process, tmp_path):
    """`lanqueue drain` must not report success when no peer could take the node's LAN jobs."""
    node = node_process(["--lan", "farm=farm-secret-1"])
    gcode = tmp_path / "d.gcode"
    gcode.write_text("G28\n")
    assert lanqueue(node, "add", str(gcode), "--queue", "farm").returncode == 0
    r = lanqueue(node, "drain")
    assert r.returncode == 1 and "1 job(s) still have this node as home" in r.stdout, r.stdout
    r = requests.post(node.url + "/lanqueue/lan/drain", headers={"X-Api-Key": API_KEY}, timeout=10)
    assert r.json() == {"moved": 0, "unconfirmed": 0, "kept": 1}


def test_add_refuses_a_count_below_one_before_uploading(node_process, tmp_path):
    node = node_process()
    gcode = tmp_path / "z.gcode"
    gcode.write_text("G28\n")
    for bad in ("0", "-2", "x"):
        r = lanqueue(node, "add", str(gcode), "--count", bad)
        assert r.returncode == 2 and "--count" in r.stderr, r.stderr
    files = requests.get(node.url + "/api/files", headers={"X-Api-Key": API_KEY}, timeout=10).json()["files"]
    state = requests.get(node.url + CP + "/state/get", headers={"X-Api-Key": API_KEY}, timeout=10).json()
    assert files == [] and state["queues"][0]["jobs"] == []


def test_virtual_printer_command_injects_a_thermal_runaway(node_process, tmp_path):
    """`lanqueue virtual-printer` offers the one-time faults too: a thermal runaway after N
    commands ends a print over the pty with the firmware's reason."""
    import time

    printer = subprocess.Popen([sys.executable, "-m", "lanqueue.cli", "virtual-printer", "--speed", "500",
                                "--thermal-runaway-after", "40"], stdout=subprocess.PIPE, text=True)
    try:
        pty = printer.stdout.readline().strip()
        node = node_process(["--printer", pty])
        h = {"X-Api-Key": API_KEY}
        body = "\n".join(["G28"] + [f"G1 X{i % 50} Y{i % 40} F6000" for i in range(300)]) + "\n"
        assert requests.post(node.url + "/api/files/local", headers=h, files={"file": ("t.gcode", body)}).status_code == 201
        deadline = time.monotonic() + 20
        while requests.get(node.url + "/api/job", headers=h).json()["state"] != "Operational":
            assert time.monotonic() < deadline, "printer not operational"
            time.sleep(0.1)
        r = requests.post(node.url + "/api/files/local/t.gcode", headers=h, json={"command": "select", "print": True})
        assert r.status_code == 204
        deadline = time.monotonic() + 20
        while "Thermal Runaway" not in (job := requests.get(node.url + "/api/job", headers=h).json()).get("error", ""):
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
    finally:
        printer.terminate()
        printer.wait(10)


def test_client_commands_find_a_node_that_listens_on_one_address(tmp_path):
    """`lanqueue status` on the node's machine uses the node's own settings: with `host` set to
    one address (not 0.0.0.0), the client must go there, not to 127.0.0.1."""
    import os
    import time

    from conftest import free_port

    port = free_port()
    cfg = tmp_path / "node.toml"
    cfg.write_text(f'host = "127.0.0.2"\nport = {port}\ndata-dir = "{tmp_path / "d"}"\n'
                   f'api-key = "{API_KEY}"\nno-mdns = true\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANQUEUE_")}
    proc = subprocess.Popen([sys.executable, "-m", "lanqueue.cli", "serve", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"http://127.0.0.2:{port}/api/version", headers={"X-Api-Key": API_KEY}, timeout=1).ok:
                    break
            except requests.RequestException:
                assert time.monotonic() < deadline, "node did not start"
                time.sleep(0.1)
        r = subprocess.run([sys.executable, "-m", "lanqueue.cli", "status", "--config", str(cfg)],
                           capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 0 and "queue local" in r.stdout, r.stdout + r.stderr
    finally:
        proc.terminate()
        proc.wait(15)


def test_serve_on_a_port_in_use_says_so_without_a_traceback(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "lanqueue.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                            "--data-dir", str(tmp_path / "d"), "--no-mdns"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
