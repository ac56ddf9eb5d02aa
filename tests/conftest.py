"""Shared fixtures: a real node on loopback, in-process or as its own process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from aiohttp.test_utils import TestClient, TestServer

from lanqueue.config import Options

API_KEY = "TESTKEY0123456789"
CP = "/plugin/continuousprint"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_options(tmp_path: Path, **kw) -> Options:
    base = Options(
        host="127.0.0.1", port=free_port(), data_dir=tmp_path / "node", name="test-node",
        api_key=API_KEY, no_mdns=True, virtual_speed=200.0, max_upload_mb=5,
    )
    return replace(base, **kw)


@pytest.fixture
async def node_factory(tmp_path):
    """Start in-process nodes: `client, node = await node_factory(**options)`."""
    from lanqueue.node import Node

    started: list[TestClient] = []

    async def start(**kw):
        node = Node(node_options(tmp_path, **kw))
        node.prepare()
        client = TestClient(TestServer(node.make_app(), host="127.0.0.1"), headers={"X-Api-Key": API_KEY})
        await client.start_server()
        started.append(client)
        return client, node

    yield start
    for c in started:
        await c.close()


@pytest.fixture
async def api(node_factory):
    client, _ = await node_factory()
    return client


class NodeProcess:
    """`lanqueue serve` as a real process, for clients that block (requests) and for kill -9."""

    def __init__(self, data_dir: Path, port: int, extra: list[str] | None = None) -> None:
        self.data_dir, self.port, self.extra = data_dir, port, extra or []
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.log = data_dir.parent / f"node-{port}.log"

    def start(self, timeout: float = 20.0) -> None:
        cmd = [sys.executable, "-m", "lanqueue.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--data-dir", str(self.data_dir), "--api-key", API_KEY, "--no-mdns", "--virtual-speed", "200",
               *self.extra]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited: {self.log.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/api/version", headers={"X-Api-Key": API_KEY}, timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError("node did not start in time")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def node_process(tmp_path):
    nodes: list[NodeProcess] = []

    def make(extra: list[str] | None = None, data_dir: Path | None = None, port: int | None = None) -> NodeProcess:
        n = NodeProcess(data_dir or tmp_path / f"data{len(nodes)}", port or free_port(), extra)
        nodes.append(n)
        n.start()
        return n

    yield make
    for n in nodes:
        n.kill()
