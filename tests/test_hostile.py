"""A real `lanqueue serve` under hostile conditions: damaged data directories, floods of
slow-header connections, text that tries to forge log lines. Everything on loopback."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import API_KEY, CP, NodeProcess, free_port

from lanqueue.api.connections import Framing, Phase
from lanqueue.logsafe import SafeLogFilter

H = {"X-Api-Key": API_KEY}


# --- damaged data directories ----------------------------------------------------------------


def serve_cmd(data_dir: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "lanqueue.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--data-dir", str(data_dir), "--api-key", API_KEY, "--no-mdns"]


@pytest.fixture(scope="module")
def healthy_dir(tmp_path_factory) -> Path:
    """A data directory a node has used (database with jobs, node id), stopped cleanly."""
    base = tmp_path_factory.mktemp("healthy")
    node = NodeProcess(base / "data", free_port())
    node.start()
    try:
        for i in range(30):
            r = requests.post(node.url + CP + "/set/add", data={"path": f"f{i}.gcode", "count": "1"}, headers=H,
                              timeout=10)
            assert r.status_code == 200
    finally:
        node.stop()
    return base / "data"


def start_and_wait(data_dir: Path) -> tuple[int, str, float]:
    began = time.monotonic()
    done = subprocess.run(serve_cmd(data_dir, free_port()), capture_output=True, text=True, timeout=30, check=False)
    return done.returncode, done.stderr, time.monotonic() - began


def assert_one_line_reason(rc: int, stderr: str, took: float, names: str) -> None:
    assert rc != 0 and took < 5.0, (rc, took, stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr  # one line, no traceback
    assert names in lines[0] and "Traceback" not in stderr


def copy_of(healthy: Path, where: Path) -> Path:
    shutil.copytree(healthy, where)
    return where


@pytest.mark.slow
def test_truncated_database(healthy_dir, tmp_path):
    data = copy_of(healthy_dir, tmp_path / "d")
    db = data / "lanqueue.sqlite3"
    db.write_bytes(db.read_bytes()[: 3 * 4096 + 100])
    rc, err, took = start_and_wait(data)
    assert_one_line_reason(rc, err, took, str(db))
    assert "lanqueue check" in err or "move" in err
    check = subprocess.run([sys.executable, "-m", "lanqueue.cli", "check", "--data-dir", str(data)],
                           capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 1 and str(db) in check.stderr


@pytest.mark.slow
def test_not_a_database(healthy_dir, tmp_path):
    data = copy_of(healthy_dir, tmp_path / "d")
    db = data / "lanqueue.sqlite3"
    db.write_bytes(os.urandom(8192))
    for extra in ("lanqueue.sqlite3-wal", "lanqueue.sqlite3-shm"):
        (data / extra).unlink(missing_ok=True)
    rc, err, took = start_and_wait(data)
    assert_one_line_reason(rc, err, took, str(db))
    assert "not a database" in err


def test_check_reports_a_healthy_directory(healthy_dir):
    check = subprocess.run([sys.executable, "-m", "lanqueue.cli", "check", "--data-dir", str(healthy_dir)],
                           capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 0 and "ok" in check.stdout and "30 jobs" in check.stdout, check


def _mount(args: list[str]) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"mount {' '.join(args)} failed here: {done.stderr.strip()}")


@pytest.mark.slow
def test_read_only_database_file(healthy_dir, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("making a file read-only for root takes a read-only bind mount (run as root)")
    data = copy_of(healthy_dir, tmp_path / "d")
    db = data / "lanqueue.sqlite3"
    _mount(["--bind", str(db), str(db)])
    try:
        _mount(["-o", "remount,bind,ro", str(db)])
        rc, err, took = start_and_wait(data)
    finally:
        subprocess.run(["umount", str(db)], check=False)
    assert_one_line_reason(rc, err, took, str(db))
    assert "writable" in err


@pytest.mark.slow
def test_read_only_data_directory(healthy_dir, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("a read-only filesystem for the data directory takes a tmpfs mount (run as root)")
    mnt = tmp_path / "ro"
    mnt.mkdir()
    _mount(["-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)])
    try:
        shutil.copytree(healthy_dir, mnt, dirs_exist_ok=True)
        _mount(["-o", "remount,ro", str(mnt)])
        rc, err, took = start_and_wait(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
    assert_one_line_reason(rc, err, took, str(mnt))


# --- slow-header flood ----------------------------------------------------------------------


FLOOD_NODE = r"""
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
from lanqueue.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_slow_header_flood_under_ulimit_1024(tmp_path):
    """3,000 connections that send half a request head and stop, against a node limited to 1,024
    file descriptors: a client with the key still gets state/get within a second, and the log
    grows by a bounded amount (no accept() error storm, no line per connection)."""
    port = free_port()
    log_path = tmp_path / "node.log"
    cmd = [sys.executable, "-c", FLOOD_NODE, "serve", "--host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(tmp_path / "data"), "--api-key", API_KEY, "--no-mdns"]
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    socks: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if requests.get(url + CP + "/state/get", headers=H, timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "node did not start"
            time.sleep(0.1)
        size_before = log_path.stat().st_size
        worst = 0.0
        for i in range(3000):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            socks.append(s)
            if i % 300 == 299:
                time.sleep(0.05)
                for t in socks[-300:]:
                    try:
                        t.send(b"GET /plugin/continuousprint/state/get HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    except OSError:
                        pass
                began = time.monotonic()
                r = requests.get(url + CP + "/state/get", headers=H, timeout=5)
                took = time.monotonic() - began
                worst = max(worst, took)
                assert r.status_code == 200 and took < 1.0, (i, r.status_code, took)
        assert proc.poll() is None
        grown = log_path.stat().st_size - size_before
        assert grown < 20_000, log_path.read_text()[-3000:]
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the pure parts -----------------------------------------------------------------------


def test_framing_follows_heads_bodies_and_pipelined_requests():
    f = Framing(0.0, header_timeout=10, body_idle_timeout=30)
    assert f.evictable and f.deadline == 10
    f.feed(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n", 1.0)
    assert f.phase is Phase.HEAD and f.deadline == 11 and f.evictable
    f.feed(b"\r\nab", 2.0)
    assert f.phase is Phase.BODY and f.deadline == 32 and not f.evictable
    f.feed(b"cdeGET / HTTP/1.1\r\n\r\n", 3.0)
    assert f.phase is Phase.IDLE and f.deadline is None
    f.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", 4.0)
    assert f.phase is Phase.CHUNKED and f.deadline == 34
    f.feed(b"0\r\n\r\n", 5.0)
    assert f.phase is Phase.IDLE and f.deadline is None
    f.feed(b"G", 6.0)  # a head sent a byte at a time keeps its first deadline
    f.feed(b"E", 15.0)
    assert f.deadline == 16


def test_log_filter_escapes_and_limits(caplog):
    now = [0.0]
    flt = SafeLogFilter(burst=3, window=10.0, clock=lambda: now[0])
    logger = logging.getLogger("lanqueue.test.safe")
    logger.addFilter(flt)
    try:
        with caplog.at_level(logging.INFO, logger="lanqueue.test.safe"):
            logger.info("refused %s", "evil\n2026-01-01 INFO forged line\x1b[2J")
            for _ in range(50):
                logger.info("connection refused")
            now[0] = 11.0
            logger.info("connection refused")
    finally:
        logger.removeFilter(flt)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "refused evil\\n2026-01-01 INFO forged line\\x1b[2J"
    assert messages.count("connection refused") == 3
    assert messages[-1] == "connection refused (and 47 more like this in the last 10 s)"


def test_check_on_a_missing_database_is_fine(tmp_path):
    from lanqueue.store import check_database

    healthy, lines = check_database(tmp_path / "none.sqlite3")
    assert healthy and "no database yet" in lines[0]
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"x" * 5000)
    healthy, lines = check_database(bad)
    assert not healthy and str(bad) in lines[0]
    sqlite3.connect(tmp_path / "empty.sqlite3").close()


async def _guarded_server(**guard_kw):
    """A tiny aiohttp app behind a ConnectionGuard on loopback: (runner, server, guard, port)."""
    import asyncio

    from aiohttp import web

    from lanqueue.api.connections import ConnectionGuard

    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=str(len(await request.read())))

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_get("/echo", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    guard = ConnectionGuard(runner.server, **guard_kw)
    server = await asyncio.get_running_loop().create_server(guard, "127.0.0.1", 0)
    return runner, server, guard, server.sockets[0].getsockname()[1]


async def test_guard_answers_408_to_slow_heads_and_silent_bodies():
    import asyncio

    runner, server, guard, port = await _guarded_server(limit=50, header_timeout=0.3, body_idle_timeout=0.3)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n")  # never finished
        answer = await asyncio.wait_for(reader.read(), 3)
        assert answer.startswith(b"HTTP/1.1 408")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")  # 7 bytes missing
        answer = await asyncio.wait_for(reader.read(), 3)
        assert answer.startswith(b"HTTP/1.1 408")
        # a whole request on a fresh connection is answered normally
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
        answer = await asyncio.wait_for(reader.read(), 3)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"3")
    finally:
        server.close()
        await guard.async_close()
        await runner.cleanup()


async def test_guard_at_its_cap_evicts_a_slow_head_for_a_newcomer():
    import asyncio

    runner, server, guard, port = await _guarded_server(limit=3, header_timeout=30)
    try:
        slow = []
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /echo HTTP/1.1\r\n")
            slow.append((reader, writer))
        await asyncio.sleep(0.1)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 3)
        assert answer.startswith(b"HTTP/1.1 200")
        first = await asyncio.wait_for(slow[0][0].read(), 3)  # the oldest slow head made room
        assert first.startswith(b"HTTP/1.1 408")
        assert len(guard.connections) <= 3
    finally:
        server.close()
        await guard.async_close()
        await runner.cleanup()
