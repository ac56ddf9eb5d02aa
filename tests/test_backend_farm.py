"""`lanqueue farm FILE`: one full node per printer entry from one process, all stopped by SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time

import pytest
import requests
from conftest import API_KEY, CP, free_port

from lanqueue.config import ConfigError
from lanqueue.farmfile import load_farm


def _wait_up(url: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = requests.get(url + CP + "/state/get", headers={"X-Api-Key": API_KEY}, timeout=1)
            if r.ok:
                return r.json()
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


@pytest.mark.slow
def test_farm_runs_a_node_per_printer_and_sigterm_stops_them_all(tmp_path):
    ports = [free_port(), free_port()]
    farm = tmp_path / "farm.toml"
    farm.write_text(f"""
[defaults]
api_key = "{API_KEY}"
host = "127.0.0.1"
no_mdns = true
virtual_speed = 50.0

[[printer]]
name = "left"
printer = "virtual"
port = {ports[0]}

[[printer]]
name = "right"
printer = "virtual"
port = {ports[1]}
printer_key = "not-on-any-command-line"
""")
    proc = subprocess.Popen([sys.executable, "-m", "lanqueue.cli", "farm", str(farm)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        states = [_wait_up(f"http://127.0.0.1:{p}") for p in ports]
        assert [s["printer"]["backend"] for s in states] == ["virtual", "virtual"]
        names = [requests.get(f"http://127.0.0.1:{p}/lanqueue/peers", headers={"X-Api-Key": API_KEY}, timeout=5)
                 .json()["name"] for p in ports]
        assert names == ["left", "right"]
        # separate data dirs, each config private; the secret is in no process's command line
        for name in ("left", "right"):
            config = tmp_path / name / "farm-node.toml"
            assert stat.S_IMODE(config.stat().st_mode) == 0o600
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmdline = f.read()
                except OSError:
                    continue
                assert b"not-on-any-command-line" not in cmdline
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        for p in ports:
            with pytest.raises(requests.ConnectionError):
                requests.get(f"http://127.0.0.1:{p}/api/version", timeout=1)
    finally:
        if proc.poll() is None:  # SIGTERM first: the farm stops its nodes (a SIGKILL would orphan them)
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("text, message", [
    ("", "no [[printer]]"),
    ('[[printer]]\nprinter = "virtual"\n', "needs a name"),
    ('[[printer]]\nname = "a"\n', "needs a printer URL"),
    ('[[printer]]\nname = "a"\nprinter = "virtual"\ncolour = "red"\n', "unknown option"),
    ('[[printer]]\nname = "a"\nprinter = "virtual"\n[[printer]]\nname = "a"\nprinter = "virtual"\n', "same name"),
    (('[[printer]]\nname = "a"\nprinter = "virtual"\nport = 5005\n'
      '[[printer]]\nname = "b"\nprinter = "virtual"\nport = 5005\n'), "same port"),
    ('[printers]\n', "unknown section"),
])
def test_bad_farm_files_are_refused_with_the_reason(tmp_path, text, message):
    farm = tmp_path / "farm.toml"
    farm.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_farm(farm)
