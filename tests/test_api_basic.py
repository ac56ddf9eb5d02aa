"""The four public routes and auth, over real HTTP on loopback against an in-process node."""

from __future__ import annotations

from conftest import API_KEY, CP


async def test_every_route_needs_the_key(api):
    for path in (CP + "/state/get", "/api/version", "/api/files", CP + "/history/get"):
        r = await api.get(path, headers={"X-Api-Key": "wrong"})
        assert r.status == 403 and "error" in await r.json()
    r = await api.get(CP + "/state/get", headers={"X-Api-Key": ""})
    assert r.status == 403
    assert (await api.get(CP + "/state/get", headers={"Authorization": f"Bearer {API_KEY}", "X-Api-Key": ""})).status == 200
    assert (await api.get(CP + f"/state/get?apikey={API_KEY}", headers={"X-Api-Key": ""})).status == 200


async def test_state_shape(api):
    r = await api.get(CP + "/state/get")
    assert r.status == 200 and r.content_type == "application/json"
    state = await r.json()
    assert state["active"] is False and state["statusType"] in ("NORMAL", "INIT")
    assert state["profile"] == "Generic"
    assert [q["name"] for q in state["queues"]] == ["local"]


async def test_set_add_creates_job_with_defaults(api):
    r = await api.post(CP + "/set/add", data={"path": "a.gcode", "sd": "False", "jobName": "J"})
    assert r.status == 200
    body = await r.json()
    assert body["set_"]["count"] == 1 and body["set_"]["remaining"] == 1  # not the original's count=0
    assert body["set_"]["missing_file"] is True
    r = await api.post(CP + "/set/add", data={"path": "b.gcode", "count": "3", "job": str(body["job_id"]),
                                              "materials": ["PLA_red_#ff0000", ""], "profiles[]": "MK3"})
    b2 = await r.json()
    assert b2["job_id"] == body["job_id"] and b2["set_"]["materials"] == ["PLA_red_#ff0000", None]
    assert b2["set_"]["profiles"] == ["MK3"]
    state = await (await api.get(CP + "/state/get")).json()
    job = state["queues"][0]["jobs"][0]
    assert job["name"] == "J" and job["draft"] is True and [s["path"] for s in job["sets"]] == ["a.gcode", "b.gcode"]


async def test_set_add_json_field(api):
    import json

    r = await api.post(CP + "/set/add", data={"json": json.dumps({"path": "x.gcode", "count": 2, "jobDraft": False})})
    body = await r.json()
    assert r.status == 200 and body["set_"]["count"] == 2


async def test_set_active_answers_new_state(api):
    state = await (await api.post(CP + "/set_active", data={"active": "True"})).json()
    assert state["active"] is True
    state = await (await api.post(CP + "/set_active", data={"active": "false"})).json()
    assert state["active"] is False and state["status"].startswith("Inactive")


async def test_external_data_is_stored(api):
    r = await api.post(CP + "/automation/external", json={"a": 1, "b": "hello"})
    assert r.status == 200 and await r.json() == "OK"
    r = await api.post(CP + "/automation/external", data="[1,2]", headers={"Content-Type": "application/json"})
    assert r.status == 400


async def test_version(api):
    body = await (await api.get("/api/version")).json()
    assert body["api"] == "0.1" and "lanqueue" in body["text"]


async def test_chunked_form_body_is_held_to_the_form_limit(api):
    """A form sent chunked has no Content-Length; it must still be capped at the form limit
    (1 MiB), not at the upload limit, and a refused form adds nothing."""
    from lanqueue.api.forms import MAX_FORM_BYTES

    body = b"path=a.gcode&count=1&pad=" + b"x" * (MAX_FORM_BYTES + 1024)

    async def chunks():
        for i in range(0, len(body), 1 << 16):
            yield body[i:i + (1 << 16)]

    r = await api.post(CP + "/set/add", data=chunks(),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.request_info.headers.get("Transfer-Encoding") == "chunked"
    assert r.status == 413 and r.content_type == "application/json" and "error" in await r.json()
    state = await (await api.get(CP + "/state/get")).json()
    assert state["queues"][0]["jobs"] == []


async def test_set_add_to_a_lan_job_says_why_it_is_refused(node_factory):
    """A LAN job id is a UUID: set/add with one must get the LAN queue's own answer, not
    'job id must be an integer'; and it adds nothing."""
    import aiohttp

    api, _ = await node_factory(lan=("farm=farm-secret-1",))
    form = aiohttp.FormData()
    form.add_field("file", b"G28\n", filename="p.gcode")
    assert (await api.post("/api/files/local", data=form)).status == 201
    r = await api.post(CP + "/set/add", data={"path": "p.gcode", "queue": "farm", "jobDraft": "false"})
    assert r.status == 200
    job_id = (await r.json())["job_id"]
    r = await api.post(CP + "/set/add", data={"path": "p.gcode", "queue": "farm", "job": job_id})
    assert r.status == 400
    assert "integer" not in (await r.json())["error"] and "LAN job" in (await r.json())["error"]
    state = await (await api.get(CP + "/state/get")).json()
    farm = next(q for q in state["queues"] if q["name"] == "farm")
    assert [len(j["sets"]) for j in farm["jobs"]] == [1]


async def test_lan_set_add_with_count_zero_is_refused_not_printed_once(node_factory):
    import aiohttp

    api, _ = await node_factory(lan=("farm=farm-secret-1",))
    form = aiohttp.FormData()
    form.add_field("file", b"G28\n", filename="p.gcode")
    assert (await api.post("/api/files/local", data=form)).status == 201
    r = await api.post(CP + "/set/add", data={"path": "p.gcode", "queue": "farm", "count": "0"})
    assert r.status == 400 and "count" in (await r.json())["error"]
    state = await (await api.get(CP + "/state/get")).json()
    assert next(q for q in state["queues"] if q["name"] == "farm")["jobs"] == []


async def test_queues_get_and_state_get_agree_on_a_lan_queue_addr(node_factory):
    api, node = await node_factory(lan=("farm=farm-secret-1",))
    listed = {q["name"]: q["addr"] for q in await (await api.get(CP + "/queues/get")).json()}
    state = await (await api.get(CP + "/state/get")).json()
    shown = {q["name"]: q["addr"] for q in state["queues"]}
    assert listed == shown == {"local": None, "farm": node.node_id}


async def test_editing_the_sets_of_a_lan_job_says_what_can_be_edited(node_factory):
    """The page sends a LAN job's sets with their string ids ('<uuid>_0'); the answer must say
    that a LAN job's sets are not edited, not 'set id must be an integer'."""
    import json

    import aiohttp

    api, _ = await node_factory(lan=("farm=farm-secret-1",))
    form = aiohttp.FormData()
    form.add_field("file", b"G28\n", filename="p.gcode")
    assert (await api.post("/api/files/local", data=form)).status == 201
    jid = (await (await api.post(CP + "/set/add", data={"path": "p.gcode", "queue": "farm"})).json())["job_id"]
    doc = {"queue": "farm", "id": jid, "sets": [{"id": f"{jid}_0", "count": 3}]}
    r = await api.post(CP + "/job/edit", data={"json": json.dumps(doc)})
    assert r.status == 400
    error = (await r.json())["error"]
    assert "integer" not in error and "LAN job" in error and "sets" in error


def _strict(text: str):
    import json

    def refuse(token):
        raise AssertionError(f"{token} in an answer: not JSON for a browser")

    return json.loads(text, parse_constant=refuse)


async def test_nan_and_infinity_in_input_never_reach_an_answer(api):
    """Python's json reads NaN/Infinity/1e400; written back into state/get they make it invalid
    JSON for every browser (the page could no longer load). Input with them is refused or kept
    as plain text, and every answer stays strict JSON."""
    r = await api.post(CP + "/automation/external", data=b'{"x": NaN}', headers={"Content-Type": "application/json"})
    assert r.status == 400
    r = await api.post(CP + "/automation/external", data=b'{"x": 1e400}', headers={"Content-Type": "application/json"})
    assert r.status == 400
    r = await api.post(CP + "/set/add", data={"json": '{"path": "a.gcode", "metadata": {"t": Infinity}}'})
    assert r.status == 400
    r = await api.post(CP + "/set/add", data={"path": "a.gcode", "metadata": '{"t": NaN}'})
    assert r.status == 200
    assert _strict(await r.text())["set_"]["metadata"] == '{"t": NaN}'  # kept as the text it was
    _strict(await (await api.get(CP + "/state/get")).text())
