"""Limits on stored values, at the door: the cases that once broke a node for good."""

from __future__ import annotations

import json

import pytest
from conftest import CP

from lanqueue.errors import BadRequest
from lanqueue.limits import MAX_DEPTH, check_text, check_value


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


async def state_ok(api) -> dict:
    r = await api.get(CP + "/state/get")
    assert r.status == 200, await r.text()
    return await r.json()


async def test_deep_metadata_is_refused_and_state_keeps_answering(api):
    r = await api.post(CP + "/set/add", data={"path": "a.gcode", "count": "1", "metadata": nested(975)})
    assert r.status == 400 and "nested too deeply" in (await r.json())["error"]
    r = await api.post(CP + "/set/add", data={"path": "a.gcode", "count": "1", "metadata": nested(MAX_DEPTH - 1)})
    assert r.status == 200  # deep but within the limit: stored, and read back
    state = await state_ok(api)
    assert len(state["queues"][0]["jobs"]) == 1
    r = await api.post(CP + "/set_active", data={"active": "false"})
    assert r.status == 200


@pytest.mark.parametrize("field", ["jobName", "path", "materials"])
async def test_lone_surrogates_are_a_400(api, field):
    body = {"path": "a.gcode", "count": 1, field: "x\ud800"}
    r = await api.post(CP + "/set/add", data=json.dumps(body), headers={"Content-Type": "application/json"})
    assert r.status == 400, await r.text()
    assert (await state_ok(api))["queues"][0]["jobs"] == []


async def test_job_edit_with_a_surrogate_name_changes_nothing(api):
    r = await api.post(CP + "/set/add", data={"path": "a.gcode", "count": "1", "jobName": "J"})
    jid = (await r.json())["job_id"]
    r = await api.post(CP + "/job/edit", data={"json": json.dumps({"id": jid, "name": "\udc00"})})
    assert r.status == 400
    assert (await state_ok(api))["queues"][0]["jobs"][0]["name"] == "J"


def test_check_value_walks_without_recursion():
    deep = current = []
    for _ in range(100_000):  # far past Python's recursion limit
        nxt: list = []
        current.append(nxt)
        current = nxt
    with pytest.raises(BadRequest, match="nested too deeply"):
        check_value(deep)
    with pytest.raises(BadRequest, match="too large"):
        check_value({"n": 2**64})
    with pytest.raises(BadRequest, match="NaN"):
        check_value([float("nan")])
    with pytest.raises(BadRequest, match="surrogate"):
        check_value({"\ud800": 1})
    assert check_value({"ok": ["ü", 1.5, None, True, 2**63 - 1]}) is not None
    with pytest.raises(BadRequest, match="too long"):
        check_text("é" * 40_000)
