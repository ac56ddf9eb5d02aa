"""SWIM membership in the node's discovery service: real services on 127.0.0.1, real HTTP.

What is checked: the SWIM route decodes strictly (bad input a 4xx JSON error that changes
nothing); members heard of only through gossip are shown with their full info; a forged
suspicion of a live node is refuted and never takes it offline; a restarted node (a higher,
persisted incarnation) supersedes its DEAD entry.
"""

from __future__ import annotations

import json

import aiohttp
import pytest
import test_discovery_service as tds
from test_discovery_service import offline, online, until

from lanqueue.discovery.service import next_incarnation
from lanqueue.discovery.swim import Status
from lanqueue.discovery.swimnet import MAX_SWIM_BYTES, SWIM_PATH

pytestmark = pytest.mark.timeout(60)
make_node = tds.make_node  # the same fixture: real services on 127.0.0.1


def ping(sender: str, port: int, updates: list[list[object]] | None = None, **hello: object) -> dict[str, object]:
    return {
        "kind": "ping", "from": sender, "port": port, "seq": 1, "updates": updates or [],
        "hello": {"node_id": sender, "name": "x", "protocol": 1, "api_port": port, "profile": "p",
                  "queues": [], "status": "Operational", **hello},
    }


async def test_bad_messages_are_4xx_and_change_nothing(make_node):
    a = await make_node(mdns=False)
    url = f"http://127.0.0.1:{a.port}{SWIM_PATH}"
    good = ping("stranger", 9)
    bad_bodies: list[bytes] = [
        b"not json", b"[]", b"{}",
        json.dumps({**good, "kind": "hug"}).encode(),
        json.dumps({**good, "from": "bad id!"}).encode(),
        json.dumps({**good, "port": 70000}).encode(),
        json.dumps({**good, "seq": -1}).encode(),
        json.dumps({**good, "updates": [["n", 7, 0, ""]]}).encode(),
        json.dumps({**good, "updates": [["n", 0, 0, "nowhere"]]}).encode(),
        json.dumps({**good, "updates": [["n", 0, 0, ""]] * 17}).encode(),
        json.dumps({**good, "hello": {**good["hello"], "node_id": "someone-else"}}).encode(),  # type: ignore[dict-item]
        json.dumps({**good, "kind": "ack"}).encode(),  # an ack names its target
    ]
    async with aiohttp.ClientSession() as http:
        for body in bad_bodies:
            async with http.post(url, data=body) as resp:
                assert resp.status == 400, body
                assert "error" in await resp.json()
        async with http.post(url, data=b" " * (MAX_SWIM_BYTES + 1)) as resp:
            assert resp.status == 413
        assert a.service.snapshot() == [] and a.service.swim.members == {}
        # the same message, well formed, is taken: the sender is a member now
        async with http.post(url, data=json.dumps(good).encode()) as resp:
            assert resp.status == 204
    assert a.service.swim.status_of("stranger") == Status.ALIVE
    assert a.peer("stranger")["printer_status"] == "Operational"


async def test_members_known_only_by_gossip_are_shown_with_their_info(make_node):
    """A chain of static peers (each node told of the previous one only): membership gossip
    makes every node know every other one, with name and queues."""
    nodes = [await make_node(mdns=False, queues=["q0"])]
    for i in range(1, 5):
        nodes.append(await make_node(mdns=False, queues=[f"q{i}"],
                                     static_peers=[f"127.0.0.1:{nodes[-1].port}"]))
    await until(lambda: all(online(x, y) for x in nodes for y in nodes if x is not y), 15.0)
    first, last = nodes[0], nodes[-1]
    assert first.peer(last.id)["queues"] == ["q4"] and last.peer(first.id)["queues"] == ["q0"]


async def test_forged_suspicion_of_a_live_node_is_refuted(make_node):
    a = await make_node(mdns=False)
    b = await make_node(mdns=False, static_peers=[f"127.0.0.1:{a.port}"])
    await until(lambda: online(a, b) and online(b, a))
    before = b.service.swim.incarnation
    forged = ping("mallory", 9, [[b.id, int(Status.DEAD), before, f"127.0.0.1:{b.port}"]])
    url = f"http://127.0.0.1:{a.port}{SWIM_PATH}"
    async with aiohttp.ClientSession() as http, http.post(url, data=json.dumps(forged).encode()) as resp:
        assert resp.status == 204
    assert a.service.swim.status_of(b.id) == Status.DEAD  # believed, for now
    await until(lambda: b.service.swim.incarnation > before)  # b hears it and refutes
    await until(lambda: a.service.swim.status_of(b.id) == Status.ALIVE and online(a, b))


async def test_restart_with_a_higher_incarnation_supersedes_dead(make_node, tmp_path):
    assert [next_incarnation(tmp_path) for _ in range(3)] == [1, 2, 3]
    a = await make_node(mdns=False)
    b = await make_node(mdns=False, static_peers=[f"127.0.0.1:{a.port}"], incarnation=next_incarnation(tmp_path))
    await until(lambda: online(a, b))
    b_id, port = b.id, b.port
    await b.runner.cleanup()  # killed: no farewell
    b.service._swim_task.cancel()  # and its membership stops with it
    await until(lambda: offline(a, b), 5.0)
    assert a.peer(b_id)["offline_reason"] == "heartbeat"
    assert a.service.swim.status_of(b_id) == Status.DEAD
    again = await make_node(mdns=False, port=port, node_id=b_id, incarnation=next_incarnation(tmp_path),
                            static_peers=[f"127.0.0.1:{a.port}"])
    await until(lambda: online(a, again) and online(again, a), 8.0)
    assert a.service.swim.members[b_id].incarnation >= 5
