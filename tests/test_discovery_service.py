"""DiscoveryService in one process: real mDNS on loopback, real HTTP heartbeats on 127.0.0.1.

Other processes on this machine may register `_lanqueue._tcp` on loopback too, so every check
looks only for the node ids this test made (random per test).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from contextlib import AsyncExitStack
from typing import Any, Callable

import pytest
from aiohttp import web

from lanqueue.discovery import (
    DiscoveryService,
    PeerAppeared,
    PeerChanged,
    PeerEvent,
    PeerOffline,
    PeerOnline,
    parse_peer_address,
)

pytestmark = pytest.mark.timeout(60)

INTERVAL = 0.3


class Node:
    def __init__(self, service: DiscoveryService, runner: web.AppRunner, port: int) -> None:
        self.service = service
        self.runner = runner
        self.port = port
        self.events: list[PeerEvent] = []
        service.add_listener(self.events.append)

    @property
    def id(self) -> str:
        return self.service.own.node_id

    def peer(self, node_id: str) -> dict[str, Any] | None:
        return next((p for p in self.service.snapshot() if p["node_id"] == node_id), None)


@pytest.fixture
async def make_node():
    stack = AsyncExitStack()

    async def make(*, port: int = 0, node_id: str | None = None, **kw: Any) -> Node:
        kw.setdefault("interfaces", ["127.0.0.1"])
        kw.setdefault("heartbeat_interval", INTERVAL)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        port = sock.getsockname()[1]
        node_id = node_id or uuid.uuid4().hex
        service = DiscoveryService(
            node_id, f"n-{node_id[:6]}", port, kw.pop("profile", "MK3"), kw.pop("queues", ["q"]), **kw
        )
        app = web.Application()
        service.install(app)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        stack.push_async_callback(runner.cleanup)
        node = Node(service, runner, port)  # listens from the start
        await service.async_start()
        stack.push_async_callback(service.async_close)
        return node

    threads_before = threading.active_count()
    yield make
    await stack.aclose()
    # guard: closing every service leaves no task or thread of ours behind
    await asyncio.sleep(0)
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert leftover == [], leftover
    assert threading.active_count() <= threads_before


async def until(predicate: Callable[[], bool], timeout: float = 8.0) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def online(node: Node, other: Node) -> bool:
    p = node.peer(other.id)
    return p is not None and p["status"] == "online"


def offline(node: Node, other: Node) -> bool:
    p = node.peer(other.id)
    return p is not None and p["status"] == "offline"


async def test_two_nodes_find_each_other_with_full_info(make_node):
    a = await make_node(queues=["q1", "shared"], status_provider=lambda: {"status": "printing", "current_job": "j1"})
    b = await make_node(profile="Ender3")
    await until(lambda: online(a, b) and online(b, a), 5.0)
    await until(lambda: (b.peer(a.id) or {}).get("printer_status") == "printing")
    seen = b.peer(a.id)
    assert seen["queues"] == ["q1", "shared"]
    assert seen["port"] == a.port and seen["base_url"] == f"http://127.0.0.1:{a.port}"
    assert seen["trusted"] is True and seen["protocol"] == 1
    assert seen["current_job"] == "j1"
    assert a.peer(b.id)["profile"] == "Ender3"
    assert [p.node_id for p in b.service.online_peers("shared") if p.node_id == a.id] == [a.id]
    assert not [p for p in b.service.online_peers("nope") if p.node_id == a.id]
    assert any(isinstance(e, PeerAppeared) and e.peer.node_id == a.id for e in b.events)
    assert json.loads(json.dumps(b.service.snapshot()))  # JSON-able, as the API needs
    assert abs(seen["last_seen"] - time.time()) < 5


async def test_txt_update_reaches_peers(make_node):
    a = await make_node()
    b = await make_node()
    await until(lambda: online(b, a))
    await a.service.async_update(queues=["q", "new"], name="renamed")
    await until(lambda: (b.peer(a.id) or {}).get("queues") == ["q", "new"])
    assert b.peer(a.id)["name"] == "renamed"
    assert any(isinstance(e, PeerChanged) and e.peer.node_id == a.id for e in b.events)


async def test_clean_close_is_seen_as_goodbye_at_once(make_node):
    a = await make_node(heartbeat_interval=5.0)  # slow heartbeats: the goodbye must do it
    b = await make_node(heartbeat_interval=5.0)
    await until(lambda: online(b, a))
    await a.service.async_close()
    await a.service.async_close()  # idempotent
    await until(lambda: offline(b, a), 2.0)
    assert b.peer(a.id)["offline_reason"] == "goodbye"


async def test_no_flap_back_online_while_a_closing_node_still_serves_http(make_node):
    a = await make_node()
    b = await make_node()
    await until(lambda: online(b, a))
    await a.service.async_close()  # its HTTP server keeps running: hello must answer 503
    await until(lambda: offline(b, a), 2.0)
    await asyncio.sleep(5 * INTERVAL)
    assert offline(b, a) and b.peer(a.id)["offline_reason"] == "goodbye"
    assert not any(isinstance(e, PeerOnline) and e.peer.node_id == a.id for e in b.events)


async def test_stopped_http_goes_offline_then_online(make_node):
    a = await make_node()
    b = await make_node()
    await until(lambda: online(b, a))
    port = a.port
    await a.runner.cleanup()  # the HTTP side dies; mDNS stays registered (like a hung node)
    await until(lambda: offline(b, a), 3 * INTERVAL + 3.0)
    assert b.peer(a.id)["offline_reason"] == "heartbeat"
    # Serve the hello route again on the same port: the peer comes back.
    app = web.Application()
    a.service.install(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True)
    await site.start()
    try:
        await until(lambda: online(b, a), 3.0)
        assert any(isinstance(e, PeerOffline) for e in b.events)
        assert any(isinstance(e, PeerOnline) for e in b.events)
    finally:
        await runner.cleanup()


async def test_other_protocol_is_shown_but_not_trusted(make_node):
    a = await make_node()
    b = await make_node(protocol_version=2)
    await until(lambda: online(a, b) and online(b, a))
    assert a.peer(b.id)["trusted"] is False and a.peer(b.id)["protocol"] == 2
    assert b.peer(a.id)["trusted"] is False
    assert b.id not in [p.node_id for p in a.service.online_peers()]


async def test_static_peer_without_mdns_one_sided(make_node):
    a = await make_node(mdns=False)
    b = await make_node(mdns=False, static_peers=[f"127.0.0.1:{a.port}"])
    await until(lambda: online(b, a), 3.0)
    assert b.peer(a.id)["static"] is True
    # a was never told about b: it learns from b's heartbeat and contacts it back
    await until(lambda: online(a, b), 3.0)
    assert a.peer(b.id)["static"] is False


def test_parse_peer_address():
    assert parse_peer_address("10.0.0.1:5000") == ("10.0.0.1", 5000)
    assert parse_peer_address("[fe80::1]:80") == ("fe80::1", 80)
    assert parse_peer_address("printer.local:5000") == ("printer.local", 5000)
    for bad in ["10.0.0.1", ":5000", "h:0", "h:x", "h:70000"]:
        with pytest.raises(ValueError):
            parse_peer_address(bad)


def test_instance_names_and_interface_choice():
    from lanqueue.discovery.mdns import instance_name, node_id_from_instance, resolve_interfaces

    # the instance name comes from the stable id: unique per node even on one host
    assert instance_name("abc") == "lanqueue-abc._lanqueue._tcp.local."
    assert node_id_from_instance(instance_name("abc")) == "abc"
    assert node_id_from_instance("other._lanqueue._tcp.local.") is None
    assert resolve_interfaces(None) is None and resolve_interfaces([]) is None
    assert resolve_interfaces(["lo"]) == ["127.0.0.1"]
    assert resolve_interfaces(["10.1.2.3"]) == ["10.1.2.3"]
    with pytest.raises(ValueError):
        resolve_interfaces(["no-such-if0"])


def test_unadvertisable_settings_fail_loudly():
    with pytest.raises(ValueError):
        DiscoveryService("ok-id", "n", 5000, "p", [f"q{i}" for i in range(65)])
    with pytest.raises(ValueError):
        DiscoveryService("bad id", "n", 5000, "p", [])
    with pytest.raises(ValueError):
        DiscoveryService("ok-id", "n", 0, "p", [])


async def test_update_with_unadvertisable_settings_is_refused_and_changes_nothing():
    service = DiscoveryService("ok-id", "n", 5000, "p", ["q"], mdns=False)
    with pytest.raises(ValueError):
        await service.async_update(queues=["x" * 101])
    assert service.own.queues == ("q",)
    await service.async_close()
