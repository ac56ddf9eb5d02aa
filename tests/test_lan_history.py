"""The LAN history file is opt-in (`--lan-history`), written off the event loop and rotated.

A real in-process node joins a LAN queue and prints one job from it (real SQLite, real HTTP on
loopback, the virtual printer), so the home makes decisions (a grant, its completion); only with
the flag do they land in `<data-dir>/lan-history.jsonl`.
"""

from __future__ import annotations

import asyncio
import json
import threading

import aiohttp
from conftest import CP

from lanqueue.config import add_serve_arguments, resolve_options
from lanqueue.sync.history import HISTORY_FILE, HistoryLog

NO_WAIT = {
    "scripts": {"clear": "G28 X"},
    "preprocessors": {},
    "events": {"continuousprint_success": [{"script": "clear", "preprocessor": ""}]},
}


async def _print_one_lan_job(api, node) -> None:
    form = aiohttp.FormData()
    form.add_field("file", b"G28\nG1 X1\n", filename="p.gcode")
    assert (await api.post("/api/files/local", data=form)).status == 201
    assert (await api.post(CP + "/automation/edit", data={"json": json.dumps(NO_WAIT)})).status == 200
    for _ in range(600):  # a node starting alone answers 409 'catching up' for a moment
        r = await api.post(CP + "/set/add", data={"path": "p.gcode", "queue": "farm", "jobDraft": "false"})
        if r.status != 409:
            break
        await asyncio.sleep(0.05)
    assert r.status == 200, await r.text()
    assert (await api.post(CP + "/set_active", data={"active": "true"})).status == 200
    for _ in range(300):
        if node.lan.counters["completions_applied"] >= 1:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the LAN job was not printed: {node.lan.counters}")


async def test_only_a_node_with_the_flag_writes_lan_history(node_factory, tmp_path):
    """Two nodes print one LAN job each, side by side (a LAN queue's sync gate holds a fresh
    node for some seconds: waited once); only the one with `lan_history` writes the file."""
    plain_api, plain = await node_factory(lan=("farm=farm-secret-1",), lease_ttl=3.0,
                                          data_dir=tmp_path / "plain")
    api, node = await node_factory(lan=("farm=farm-secret-2",), lease_ttl=3.0, lan_history=True,
                                   data_dir=tmp_path / "flagged")
    await asyncio.gather(_print_one_lan_job(plain_api, plain), _print_one_lan_job(api, node))

    assert plain.lan.counters["grants"] >= 1  # decisions were made ...
    assert not list(plain.data_dir.glob(HISTORY_FILE + "*"))  # ... and none written down

    await api.close()  # closes the node: the writer thread drains its queue
    rows = [json.loads(line) for line in (node.data_dir / HISTORY_FILE).read_text().splitlines()]
    events = [r["event"] for r in rows]
    assert "GrantLive" in events and "CompletionApplied" in events, events
    grant = next(r for r in rows if r["event"] == "GrantLive")
    # the columns the chaos tests read
    assert {"t", "mono", "node", "queue", "job_id", "token", "live_for"} <= grant.keys(), grant
    assert grant["node"] == node.node_id and grant["queue"] == "farm"


def test_flag_is_off_by_default_and_on_from_the_command_line(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    assert resolve_options(parser.parse_args(["--data-dir", str(tmp_path)]), env={}).lan_history is False
    args = parser.parse_args(["--data-dir", str(tmp_path), "--lan-history"])
    assert resolve_options(args, env={}).lan_history is True


def test_rows_are_written_by_another_thread_and_rotated(tmp_path, monkeypatch):
    path = tmp_path / HISTORY_FILE
    writers: set[int] = set()
    import logging.handlers

    real_emit = logging.handlers.RotatingFileHandler.emit

    def emit(self, record):
        writers.add(threading.get_ident())
        real_emit(self, record)

    monkeypatch.setattr(logging.handlers.RotatingFileHandler, "emit", emit)
    log = HistoryLog(path, max_bytes=2000, backups=2)
    for i in range(200):
        log.write({"event": "GrantLive", "i": i, "pad": "x" * 40})
    log.close()
    assert writers and threading.get_ident() not in writers
    files = sorted(tmp_path.glob(HISTORY_FILE + "*"))
    assert [f.name for f in files] == [HISTORY_FILE, HISTORY_FILE + ".1", HISTORY_FILE + ".2"]
    assert all(f.stat().st_size <= 2000 for f in files)
    newest = [json.loads(line)["i"] for line in path.read_text().splitlines()]
    assert newest[-1] == 199 and newest == list(range(newest[0], 200))  # in order, none cut

