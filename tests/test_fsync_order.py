"""Durability seen from the kernel: the node syncs the database's log to disk *before* it sends
the answer to a write. kill -9 alone cannot show this (the page cache survives a killed
process); the order of the system calls can. `strace` follows a real `lanqueue serve`; the same
check run on a node whose store was switched to `synchronous=OFF` must fail, which shows the
check can tell the two apart."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from conftest import API_KEY, CP, free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (apt-get install strace)"),
]

H = {"X-Api-Key": API_KEY}

# the node, optionally with its store's fsyncs turned off (the negative control)
LAUNCH = r"""
import os, sys
with open(os.environ["NODE_PID_FILE"], "w") as f:
    f.write(str(os.getpid()))
if sys.argv[1] == "unsafe":
    import lanqueue.store as store
    real_open = store.Store.open.__func__
    async def unsafe_open(cls, path):
        s = await real_open(cls, path)
        await s.db.execute("PRAGMA synchronous=OFF")
        return s
    store.Store.open = classmethod(unsafe_open)
from lanqueue.cli import main
sys.exit(main(sys.argv[2:]))
"""

_SYNC = re.compile(r"^(\d+)\s+f(?:data)?sync\((\d+)<([^>]*)>\)\s*=\s*0")
_SEND = re.compile(r'^(\d+)\s+(?:sendto|sendmsg)\((\d+)<(?:TCP|socket)[^>]*>,\s*(?:\{msg_name=.*?iov_base=)?"(.*)')
_RECV = re.compile(r'^(\d+)\s+recvfrom\((\d+)<(?:TCP|socket)[^>]*>,\s*"(.*)')


def synced_before_reply(trace: list[str], marker: str, db_name: str) -> bool:
    """Between the request carrying `marker` arriving and its answer (which echoes `marker`)
    leaving, was the database's file or its WAL fsynced?"""
    start = next((i for i, line in enumerate(trace) if (m := _RECV.match(line)) and marker in m.group(3)), None)
    if start is None:
        raise AssertionError(f"the request with {marker} is not in the trace")
    end = next((i for i in range(start, len(trace))
                if (m := _SEND.match(trace[i])) and m.group(3).startswith("HTTP/1.1 200") and marker in trace[i]),
               None)
    if end is None:
        raise AssertionError(f"the answer with {marker} is not in the trace")
    return any((m := _SYNC.match(line)) and os.path.basename(m.group(3)).startswith(db_name)
               for line in trace[start:end])


def run_traced(tmp_path: Path, mode: str) -> tuple[list[str], list[str]]:
    port = free_port()
    trace_file = tmp_path / f"trace-{mode}.txt"
    cmd = ["strace", "-f", "-y", "-s", "2000", "-qq", "-e", "trace=fsync,fdatasync,sendto,sendmsg,recvfrom",
           "-o", str(trace_file), sys.executable, "-c", LAUNCH, mode, "serve", "--host", "127.0.0.1",
           "--port", str(port), "--data-dir", str(tmp_path / f"data-{mode}"), "--api-key", API_KEY, "--no-mdns"]
    pid_file = tmp_path / f"node-{mode}.pid"
    env = {**os.environ, "NODE_PID_FILE": str(pid_file)}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    markers = []
    try:
        deadline = time.monotonic() + 40
        while True:
            assert proc.poll() is None, "the traced node exited"
            try:
                if requests.get(url + "/api/version", headers=H, timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "the traced node did not start"
            time.sleep(0.2)
        session = requests.Session()
        for _ in range(3):
            marker = f"m{uuid.uuid4().hex[:12]}.gcode"
            r = session.post(url + CP + "/set/add", data={"path": marker, "count": "1"}, headers=H, timeout=20)
            assert r.status_code == 200 and marker in r.text
            markers.append(marker)
    finally:
        # stop the node itself (strace passes a signal sent to it on only slowly), then strace ends
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
        else:
            proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return trace_file.read_text(errors="replace").splitlines(), markers


def test_the_wal_is_synced_before_a_write_is_answered(tmp_path):
    trace, markers = run_traced(tmp_path, "safe")
    assert all(synced_before_reply(trace, m, "lanqueue.sqlite3") for m in markers)


def test_the_check_fails_for_a_store_that_does_not_sync(tmp_path):
    trace, markers = run_traced(tmp_path, "unsafe")
    assert not any(synced_before_reply(trace, m, "lanqueue.sqlite3") for m in markers)
