"""Record dissemination by fan-out (issue 14) with real `lanqueue serve` processes on loopback.

Six nodes, static full mesh, default lease TTL (anti-entropy every 30 s). Jobs submitted on one
node reach all five others within seconds although the home pushes each version to only three
of them (sync/service.py FANOUT): the other nodes get it from a peer that forwards what was new
to it. Without forwarding, two nodes would wait for the next anti-entropy round (30 s)."""

from __future__ import annotations

import re

import pytest
import requests
from conftest import CP
from lan_helpers import H, cluster_ports, gcode, lan_args, lan_jobs, peers_online, post, upload, wait

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

N = 6
JOBS = 10


def lan_counter(node, name: str) -> int:
    text = requests.get(node.url + "/metrics", headers=H, timeout=10).text
    m = re.search(r'^lanqueue_lan_events_total\{event="' + re.escape(name) + r'"\} (\d+)', text, re.M)
    return int(m.group(1)) if m else 0


def test_a_version_reaches_every_node_through_forwards(node_process):
    ports = cluster_ports(N)
    # six nodes are few enough for direct pushes by default: make them gossip
    nodes = [node_process(lan_args(ports, p) + ["--lan-gossip-above", "2"], port=p) for p in ports]
    wait(lambda: all(peers_online(n, N - 1) for n in nodes), timeout=60, what="full mesh online")
    home = nodes[0]
    upload(home, "part.gcode", gcode("PART"))
    for i in range(JOBS):
        post(home, CP + "/set/add", data={"path": "part.gcode", "queue": "farm", "jobDraft": "false",
                                          "name": f"j{i}"})
    wait(lambda: all(len(lan_jobs(n)) == JOBS for n in nodes), timeout=8,
         what="every node has every job (well before the 30 s anti-entropy)")
    broadcasts, pushes = lan_counter(home, "record_broadcasts"), lan_counter(home, "record_pushes")
    assert broadcasts >= JOBS
    assert pushes <= 3 * broadcasts  # not to all five peers
    assert sum(lan_counter(n, "record_forwards") for n in nodes[1:]) > 0


def test_a_small_farm_gets_each_version_from_its_writer(node_process):
    """Below `--lan-gossip-above` (32 online peers by default) the writer pushes to every peer
    itself: one hop, nothing forwarded."""
    ports = cluster_ports(4)
    nodes = [node_process(lan_args(ports, p), port=p) for p in ports]
    wait(lambda: all(peers_online(n, 3) for n in nodes), timeout=60, what="full mesh online")
    home = nodes[0]
    upload(home, "part.gcode", gcode("PART"))
    for i in range(JOBS):
        post(home, CP + "/set/add", data={"path": "part.gcode", "queue": "farm", "jobDraft": "false",
                                          "name": f"j{i}"})
    wait(lambda: all(len(lan_jobs(n)) == JOBS for n in nodes), timeout=8, what="every node has every job")
    assert sum(lan_counter(n, "record_forwards") for n in nodes[1:]) == 0
    assert lan_counter(home, "record_pushes") >= 3  # each of the three peers was pushed to
