"""The farm view: the pure board (farmview.py), and the signed peer routes that carry summaries
and actions between real nodes over loopback HTTP (farm.py, sync/routes.py, api/web.py)."""

from __future__ import annotations

import itertools
import json
import time

import pytest

from lanqueue.farmview import FarmBoard, Member, check_summary, offered_actions
from lanqueue.sync.auth import sign_request
from lanqueue.sync.routes import FARM_ACTION_PATH, FARM_SUMMARY_PATH
from lanqueue.sync.transport import RESPONSE_SIGNATURE, response_signature_ok

SECRET = "farm-secret-1"


# --- the board (pure) ------------------------------------------------------------------------


def test_a_node_is_connecting_then_on_then_off_since_it_was_last_heard():
    board = FarmBoard("me", off_after=2)
    board.members([Member("me", "mine", True, 0.0), Member("b", "beta", True, 100.0, ("farm",))], now=100.0)
    (card,) = board.cards()
    assert (card["name"], card["farm_state"], card["actions"]) == ("beta", "connecting", [])
    assert board.got("b", {"node_id": "b", "state": "Printing", "managing": True}, now=101.0)
    (card,) = board.cards()
    assert (card["farm_state"], card["since"], card["actions"]) == ("on", 101.0, ["pause", "cancel", "stop"])
    assert not board.got("b", {"node_id": "b", "state": "Printing", "managing": True}, now=102.0)  # nothing new
    assert not board.failed("b", "not answering", now=103.0)  # one miss is not enough
    assert board.failed("b", "not answering", now=104.0)
    (card,) = board.cards()
    assert (card["farm_state"], card["since"], card["stale"], card["state"]) == ("off", 102.0, True, "Printing")
    assert card["actions"] == []  # nothing is offered for a node that does not answer
    assert board.got("b", {"node_id": "b", "state": "Operational"}, now=110.0)
    assert board.cards()[0]["farm_state"] == "on"


def test_discovery_offline_is_off_at_once_and_a_node_gone_from_the_roster_is_dropped():
    board = FarmBoard("me")
    board.members([Member("b", "beta", True, 50.0)], now=50.0)
    board.got("b", {"node_id": "b", "state": "Operational"}, now=51.0)
    assert board.members([Member("b", "beta", False, 55.0)], now=60.0)
    (card,) = board.cards()
    assert (card["farm_state"], card["since"]) == ("off", 55.0)
    assert board.members([], now=61.0) and board.cards() == []


def test_offered_actions_follow_the_printer_and_the_driver():
    assert offered_actions({"state": "Operational", "managing": False}) == ["start"]
    assert offered_actions({"state": "Operational", "managing": True, "status_type": "NEEDS_ACTION"}) == ["continue", "stop"]
    assert offered_actions({"state": "Paused", "managing": True}) == ["resume", "cancel", "stop"]


def test_a_summary_must_be_an_object_of_the_node_asked():
    assert check_summary({"node_id": "b"}, "b") == {"node_id": "b"}
    for bad in ([], "x", {"node_id": "c"}, {str(i): i for i in range(100)}):
        try:
            check_summary(bad, "b")
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")


# --- real nodes over loopback ------------------------------------------------------------------


_COUNTER = itertools.count(1)


def _signed_post(client, path: str, doc: object, *, queue: str, secret: str, audience: str, node_id: str = "peer-x"):
    """Signed as a member would: for the receiver's current run (`audience`, issue 11)."""
    body = json.dumps(doc).encode()
    headers = sign_request(secret.encode(), "POST", path, body, node_id=node_id, queue=queue, instance="peer-x-run",
                           audience=audience, counter=next(_COUNTER))
    headers["Content-Type"] = "application/json"
    return client.post(path, data=body, headers=headers), headers


async def _active(client) -> bool:
    return (await (await client.get("/plugin/continuousprint/state/get")).json())["active"]


async def test_peer_routes_act_only_for_a_member_of_a_shared_queue(node_factory):
    client, node = await node_factory(lan=(f"farm={SECRET}",))
    assert not await _active(client)
    unsigned = await client.post(FARM_ACTION_PATH, json={"action": "start"}, headers={"X-Api-Key": ""})
    assert unsigned.status == 403
    request, _ = _signed_post(client, FARM_ACTION_PATH, {"action": "start"}, queue="farm", secret="not-the-secret",
                                  audience=node.lan.instance)
    assert (await request).status == 403  # forged: signed with another secret
    # a real secret of a queue this node has not joined: refused the same way
    request, _ = _signed_post(client, FARM_ACTION_PATH, {"action": "start"}, queue="other", secret="other-secret-9", audience=node.lan.instance)
    refused = await request
    assert refused.status == 403 and "unknown queue" in (await refused.json())["error"]
    request, _ = _signed_post(client, FARM_SUMMARY_PATH, {}, queue="other", secret="other-secret-9", audience=node.lan.instance)
    assert (await request).status == 403
    assert not await _active(client)  # none of them changed anything

    request, headers = _signed_post(client, FARM_ACTION_PATH, {"action": "start"}, queue="farm", secret=SECRET, audience=node.lan.instance)
    ok = await request
    body = await ok.read()
    assert ok.status == 200 and json.loads(body) == {"ok": True}
    bound = f"{headers['X-Lanqueue-Instance']}/{headers['X-Lanqueue-Counter']}"
    assert response_signature_ok(SECRET.encode(), bound, body, ok.headers[RESPONSE_SIGNATURE], node.lan.instance)
    assert await _active(client)

    request, _ = _signed_post(client, FARM_ACTION_PATH, {"action": "pause"}, queue="farm", secret=SECRET, audience=node.lan.instance)
    assert (await (await request).json()) == {"error": "no print is running"}
    request, _ = _signed_post(client, FARM_ACTION_PATH, {"action": "explode"}, queue="farm", secret=SECRET, audience=node.lan.instance)
    assert "action must be one of" in (await (await request).json())["error"]
    request, _ = _signed_post(client, FARM_SUMMARY_PATH, {}, queue="farm", secret=SECRET, audience=node.lan.instance)
    summary = await (await request).json()
    assert summary["node_id"] == node.node_id and summary["managing"] is True
    assert summary["backend"]["kind"] == "virtual" and summary["queues"] == ["farm"]


async def test_farm_routes_refuse_bad_input_with_4xx(node_factory):
    client, node = await node_factory(lan=(f"farm={SECRET}",))
    farm = await (await client.get("/lanqueue/farm")).json()
    assert [c["node_id"] for c in farm["cards"]] == [node.node_id] and farm["cards"][0]["own"]
    assert {t["queue"] for t in farm["timelines"]} == {"local", "farm"}
    for form, status in (({"node": node.node_id, "action": "explode"}, 400), ({"node": node.node_id}, 400),
                         ({"node": "nobody", "action": "start"}, 404),
                         ({"node": node.node_id, "action": "pause"}, 409)):
        r = await client.post("/lanqueue/farm/action", data=form)
        assert r.status == status, (form, await r.text())
        assert "error" in await r.json()
    assert not await _active(client)
    r = await client.post("/lanqueue/farm/action", data={"node": node.node_id, "action": "start"})
    assert r.status == 200 and await _active(client)
    assert (await client.post("/lanqueue/farm/action", data={"node": node.node_id, "action": "start"},
                              headers={"X-Api-Key": "wrong"})).status == 403


async def test_thumbnail_routes_refuse_odd_names_unknown_nodes_and_unsigned_peers(node_factory):
    client, node = await node_factory(lan=(f"farm={SECRET}",))
    missing = "0" * 64 + ".png"
    for path in (f"/lanqueue/farm/thumbnail/{node.node_id}/{missing}", f"/lanqueue/farm/thumbnail/{node.node_id}/x.png",
                 f"/lanqueue/farm/thumbnail/nobody/{'1' * 64}.png"):
        r = await client.get(path)
        assert r.status == 404, path
    path = "/lanqueue/peer/v1/farm/thumbnail/" + missing
    assert (await client.post(path, data=b"", headers={"X-Api-Key": ""})).status == 403
    request, _ = _signed_post(client, path, {}, queue="farm", secret=SECRET, audience=node.lan.instance)
    assert (await request).status == 404


@pytest.mark.slow
def test_two_processes_action_carried_and_a_node_killed_is_off(node_process):
    """Without a browser: node A's farm route acts on node B's printer over the signed peer
    protocol, and shows B off (with since when) soon after B is killed; an action then is a 503."""
    import lan_helpers as lan
    import requests

    pa, pb = lan.cluster_ports(2)
    a = node_process(lan.lan_args([pa, pb], pa) + ["--name", "alpha"], port=pa)
    b = node_process(lan.lan_args([pa, pb], pb) + ["--name", "beta"], port=pb)
    lan.wait(lambda: lan.peers_online(a, 1) and lan.peers_online(b, 1), what="peers online")
    b_id = lan.get(b, "/lanqueue/peers")["node_id"]
    lan.upload(b, "short.gcode", lan.gcode("short").encode())  # after it, beta waits for its bed to be cleared
    lan.post(b, "/plugin/continuousprint/set/add", data={"path": "short.gcode", "jobName": "Short", "jobDraft": "false"})

    def card():
        return next(c for c in lan.get(a, "/lanqueue/farm")["cards"] if c["node_id"] == b_id)

    lan.wait(lambda: card()["farm_state"] == "on", what="beta on")
    assert card()["name"] == "beta" and card()["actions"] == ["start"]
    r = requests.post(a.url + "/lanqueue/farm/action", headers=lan.H, data={"node": b_id, "action": "start"}, timeout=10)
    assert r.status_code == 200, r.text
    assert lan.get(b, "/plugin/continuousprint/state/get")["active"] is True
    r = requests.post(a.url + "/lanqueue/farm/action", headers=lan.H, data={"node": b_id, "action": "resume"}, timeout=10)
    assert r.status_code == 409 and "beta" in r.json()["error"]
    # the print is done and beta needs a person: alpha's farm view says so and clears the bed
    lan.wait(lambda: "continue" in card()["actions"], what="beta waiting for a person")
    assert card()["needs"] and card()["managing"]
    r = requests.post(a.url + "/lanqueue/farm/action", headers=lan.H, data={"node": b_id, "action": "continue"}, timeout=10)
    assert r.status_code == 200, r.text
    lan.wait(lambda: lan.get(b, "/plugin/continuousprint/state/get")["statusType"] != "NEEDS_ACTION", what="beta continued")
    b.kill()
    killed = time.time()
    lan.wait(lambda: card()["farm_state"] == "off", timeout=10, what="beta off")
    off = card()
    assert killed - 5 < off["since"] <= time.time() and off["stale"] and off["actions"] == []
    r = requests.post(a.url + "/lanqueue/farm/action", headers=lan.H, data={"node": b_id, "action": "stop"}, timeout=10)
    assert r.status_code == 503 and "beta" in r.json()["error"]
