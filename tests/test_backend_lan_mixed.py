"""One LAN queue spanning three kinds of printer: a serial virtual printer, a real OctoPrint and a
real Moonraker+Klipper, each driven by its own `lanqueue serve` process on loopback.

Twenty jobs are submitted on one node; all three print from the queue until it is empty. Every
count must be exact: each job printed exactly once, as many successful runs as jobs across the
three histories, no failure. A few jobs print longer than the lease TTL, so a lease that were not
renewed while a remote printer prints would let a second node take the job (a double print)."""

from __future__ import annotations

import json

import pytest
import requests
from conftest import CP
from lan_helpers import (
    H,
    cluster_ports,
    get,
    lan_args,
    lan_jobs,
    peers_online,
    post,
    upload,
    wait,
)
from test_backend_conformance import (
    NO_WAIT,
    MoonrakerHarness,
    OctoPrintHarness,
    SerialHarness,
)

pytestmark = pytest.mark.slow

JOBS = 20
LONG = {3, 9, 15}  # these print for ~5 s, longer than the 4 s lease TTL
TTL = 4.0


@pytest.fixture
def mixed_farm(node_process, tmp_path):
    harnesses = [SerialHarness(), OctoPrintHarness(), MoonrakerHarness()]
    started = []
    try:
        for h in harnesses:
            (tmp_path / h.name).mkdir()
            h.start(tmp_path / h.name)  # skips with what to install when a server is missing
            started.append(h)
        ports = cluster_ports(3)
        nodes = []
        for h, port in zip(harnesses, ports):
            config = tmp_path / f"{h.name}.toml"
            config.write_text(f"printer_key = {json.dumps(h.key)}\n" if h.key else "")
            extra = [*lan_args(ports, port, ttl=TTL), "--printer", h.url, "--config", str(config)]
            nodes.append(node_process(extra, port=port))
        wait(lambda: all(peers_online(n, 2) for n in nodes), timeout=30, what="peers online")
        for n in nodes:
            post(n, CP + "/automation/edit", data={"json": json.dumps(NO_WAIT)})
            wait(lambda n=n: get(n, CP + "/state/get")["printer"]["state"] == "Operational", 60, what="printer ready")
        yield list(zip(harnesses, nodes))
    finally:
        for h in started:
            h.close()


@pytest.mark.timeout(600)
def test_twenty_jobs_across_serial_octoprint_and_moonraker_with_exact_counts(mixed_farm):
    (_, home), *_ = mixed_farm
    ids = []
    for i in range(JOBS):
        upload(home, f"part{i}.gcode", _portable(5 if i in LONG else 0.2))
        ids.append(wait(lambda i=i: _add(home, f"part{i}.gcode"), timeout=120, what="LAN queue takes jobs"))
    for _, node in mixed_farm:
        wait(lambda node=node: len(lan_jobs(node)) == JOBS, timeout=30, what="replicated")
    for _, node in mixed_farm:
        post(node, CP + "/set_active", data={"active": "true"})

    def done() -> bool:
        return all(j["remaining"] == 0 for j in lan_jobs(home))

    wait(done, timeout=240, step=0.5, what="all twenty printed")
    wait(lambda: all(r["end"] is not None for _, n in mixed_farm for r in get(n, CP + "/history/get")),
         timeout=30, what="every run closed")
    runs = {h.name: list(get(n, CP + "/history/get")) for h, n in mixed_farm}
    results = [r["result"] for rs in runs.values() for r in rs]
    assert results.count("success") == JOBS and len(results) == JOBS, runs
    # by job name: files with the same bytes are stored once, under the first name given them
    printed = sorted(r["job_name"] for rs in runs.values() for r in rs)
    summary = {name: [(r["job_name"], r["set_path"], r["result"]) for r in rs] for name, rs in runs.items()}
    assert printed == sorted(f"part{i}" for i in range(JOBS)), f"each job printed exactly once: {summary}"
    for h, _ in mixed_farm:
        assert runs[h.name], f"the {h.name} printer printed nothing"
    for _, node in mixed_farm:  # every node's view agrees: each job done once
        for j in lan_jobs(node):
            assert j["remaining"] == 0 and j["sets"][0]["completed"] == 1, j


def _add(node, path: str) -> str | None:
    """The new job's id, or None while the node is still catching up with its peers (409)."""
    r = requests.post(node.url + CP + "/set/add", headers=H, timeout=10,
                      data={"path": path, "queue": "farm", "jobDraft": "false", "count": "1"})
    if r.status_code == 409:
        return None
    assert r.ok, r.text
    return r.json()["job_id"]


def _portable(seconds: float) -> str:
    """A file that lasts about `seconds` on all three printers: Klipper needs M400 after a dwell
    for the file to wait; Marlin and OctoPrint's virtual printer wait on G4 alone."""
    return "M117 part\n" + "G4 P200\nM400\n" * max(1, int(seconds / 0.2)) + "M117 end\n"
