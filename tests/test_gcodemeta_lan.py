"""Slicer metadata travels in LAN records: a member that never fetched the file sees it too."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from conftest import CP
from lan_helpers import H, cluster_ports, lan_args, lan_jobs, peers_online, wait

pytestmark = pytest.mark.slow
SAMPLES = Path(__file__).resolve().parent.parent / "lanqueue" / "samples"


def test_a_peer_sees_the_slicers_figures_of_a_file_it_does_not_hold(node_process):
    pa, pb = cluster_ports(2)
    a = node_process(lan_args([pa, pb], pa), port=pa)
    b = node_process(lan_args([pa, pb], pb), port=pb)
    wait(lambda: peers_online(a, 1) and peers_online(b, 1), what="peers online")
    content = (SAMPLES / "orcaslicer.gcode").read_bytes()
    r = requests.post(a.url + "/api/files/local", headers=H, files={"file": ("orca.gcode", content)}, timeout=10)
    assert r.status_code == 201, r.text
    wait(lambda: requests.post(a.url + CP + "/set/add", headers=H, timeout=10, data={
        "path": "orca.gcode", "queue": "farm", "jobDraft": "true"}).ok, what="set/add on the LAN queue")
    on_a = lan_jobs(a)[0]["sets"][0]["gcode"]
    assert on_a["slicer"] == "OrcaSlicer 2.0.0" and on_a["filament_type"] == ["PETG"]
    assert requests.get(a.url + on_a["thumbnail"], headers=H, timeout=5).headers["Content-Type"] == "image/png"
    wait(lambda: lan_jobs(b) and lan_jobs(b)[0]["sets"][0].get("gcode"), what="replicated to b")
    on_b = lan_jobs(b)[0]["sets"][0]["gcode"]
    assert on_b == {**on_a, "thumbnail": None}  # b has not fetched the file: no picture to serve
