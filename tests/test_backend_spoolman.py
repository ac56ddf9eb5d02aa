"""Moonraker's Spoolman link feeds the queue's material matching: the node reads the active
spool's material and colour through real Moonraker (its `[spoolman]` component and proxy), and
prints a set that needs that material but not one that needs another.

Spoolman itself is a stand-in (tests/spoolman_standin.py; it is not packaged on PyPI or Debian).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from backend_servers import MoonrakerServer, klipper_cache, klipper_tarball
from conftest import CP, NodeProcess, free_port
from test_backend_conformance import NO_WAIT, MoonrakerHarness, Rig

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent


@pytest.fixture
def spoolman():
    port = free_port()
    spools = {"7": {"material": "PETG", "color_hex": "00FF00"}}
    proc = subprocess.Popen([sys.executable, str(HERE / "spoolman_standin.py"), str(port), json.dumps(spools)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/api/v1/health", timeout=1).ok:
                break
        except requests.RequestException:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


def test_active_spool_material_decides_what_the_printer_takes(spoolman, tmp_path):
    tarball = klipper_tarball()
    if tarball is None:
        pytest.skip("Klipper source missing: set KLIPPER_TARBALL to klipper-<rev>-src.tar.gz")
    MoonrakerServer.build(klipper_cache(), tarball)
    server = MoonrakerServer(free_port(), klipper_cache())
    node = NodeProcess(tmp_path / "node", free_port(), ["--printer", f"moonraker://127.0.0.1:{server.port}"])
    try:
        server.start(env={"SPOOLMAN_URL": spoolman})
        node.start()
        harness = MoonrakerHarness()
        rig = Rig(harness, node)
        rig.wait_ready()
        rig.post(CP + "/automation/edit", data={"json": json.dumps(NO_WAIT)})

        def filaments() -> list:
            return rig.state()["printer"]["capabilities"]["filaments"]

        assert filaments() == []  # no active spool yet
        rig.wait(lambda: server.api("POST", "/server/spoolman/spool_id", json={"spool_id": 7}).ok, 30,
                 "Moonraker connected to Spoolman")
        rig.wait(lambda: filaments() == [{"tool": 0, "type": "PETG", "colour": "#00FF00"}], 30,
                 "the active spool reported")
        for name in ("pla.gcode", "petg.gcode"):
            rig.upload(name, harness.gcode(0.3))
        pla = int(rig.post(CP + "/set/add", data={"path": "pla.gcode", "count": "1", "jobDraft": "false",
                                                  "materials": "PLA"}).json()["job_id"])
        petg = int(rig.post(CP + "/set/add", data={"path": "petg.gcode", "count": "1", "jobDraft": "false",
                                                   "materials": "PETG"}).json()["job_id"])
        rig.activate()
        rig.wait(lambda: rig.counts(petg) == (1, 0), 60, "the PETG set printed")
        time.sleep(1.0)
        assert rig.counts(pla) == (0, 1), "a set needing PLA waits while PETG is loaded"
        assert rig.runs("pla.gcode") == []
    finally:
        node.stop()
        server.cleanup()
