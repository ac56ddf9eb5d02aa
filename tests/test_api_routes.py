"""Behaviour of the internal Continuous Print routes and OctoPrint's file routes, over real HTTP
on loopback against an in-process node (and one real `lanqueue serve` for the octorest client)."""

from __future__ import annotations

import io
import json
import zipfile

import aiohttp
import pytest

from conftest import API_KEY, CP

GCODE = b"G28\nG1 X10 Y10\nM104 S0\n"


# --- helpers -----------------------------------------------------------------------------


async def count_success(store, job_id, set_id) -> None:
    """One successful print as the driver records it: a run ended with its count, one transaction."""
    run = await store.begin_run("local", job_id, "J", set_id, "a.gcode")
    await store.end_run(run, "success", count_success_of=(job_id, set_id))


async def state(api) -> dict:
    """state/get without `printer`: the printer's live facts (Connecting -> Operational while a
    test runs) are not what a request changes, and tests compare answers before and after."""
    r = await api.get(CP + "/state/get")
    assert r.status == 200
    body = await r.json()
    body.pop("printer", None)
    return body


async def local_jobs(api) -> list[dict]:
    return (await state(api))["queues"][0]["jobs"]


async def ok_json(r, status: int = 200):
    body = await r.json()
    assert r.status == status, body
    assert r.content_type == "application/json"
    return body


async def err(r, status: int) -> str:
    assert r.status == status, await r.text()
    assert r.content_type == "application/json"
    body = await r.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body
    return body["error"]


async def add_set(api, path="a.gcode", **fields) -> dict:
    return await ok_json(await api.post(CP + "/set/add", data={"path": path, **{k: str(v) for k, v in fields.items()}}))


async def upload(api, name: str, content: bytes = GCODE, **fields: str):
    data = aiohttp.FormData()
    for k, v in fields.items():
        data.add_field(k, v)
    data.add_field("file", content, filename=name, content_type="application/octet-stream")
    return await api.post("/api/files/local", data=data)


async def new_job(api, name="J") -> dict:
    return await ok_json(await api.post(CP + "/job/add", data={"json": json.dumps({"name": name})}))


async def edit(api, doc: dict):
    return await api.post(CP + "/job/edit", data={"json": json.dumps(doc)})


# --- job/add and job/edit ----------------------------------------------------------------


async def test_job_add_creates_an_empty_draft(api):
    job = await new_job(api, "Plates")
    assert job["name"] == "Plates" and job["draft"] is True and job["sets"] == [] and job["queue"] == "local"
    assert [j["id"] for j in await local_jobs(api)] == [job["id"]]
    await err(await api.post(CP + "/job/add", data={"json": json.dumps({})}), 400)
    await err(await api.post(CP + "/job/add", data={"json": "[1]"}), 400)
    await err(await api.post(CP + "/job/add", data={}), 400)
    await err(await api.post(CP + "/job/add", data={"json": json.dumps({"name": "x", "queue": "nope"})}), 404)
    assert len(await local_jobs(api)) == 1


async def test_job_edit_fields_and_sets(api):
    added = await add_set(api, "a.gcode", count=2, jobName="J")
    jid, sid = added["job_id"], added["set_"]["id"]
    job = await ok_json(await edit(api, {"id": jid, "name": "Renamed", "count": 3, "draft": "False"}))
    assert job["name"] == "Renamed" and job["count"] == 3 and job["remaining"] == 3 and job["draft"] is False
    # update the existing set, create a new one (list order = rank order)
    job = await ok_json(await edit(api, {"id": jid, "sets": [
        {"path": "new.gcode", "count": 4, "materials": ["PLA_red_#ff0000", None]},
        {"id": sid, "count": 5},
    ]}))
    assert [s["path"] for s in job["sets"]] == ["new.gcode", "a.gcode"]
    assert job["sets"][0]["count"] == 4 and job["sets"][0]["remaining"] == 4
    assert job["sets"][0]["materials"] == ["PLA_red_#ff0000", None]
    assert job["sets"][1]["id"] == sid and job["sets"][1]["count"] == 5
    # replace: sets not listed go
    job = await ok_json(await edit(api, {"id": jid, "sets": [{"id": sid}]}))
    assert [s["id"] for s in job["sets"]] == [sid]
    assert (await local_jobs(api))[0]["sets"][0]["id"] == sid


@pytest.mark.parametrize(
    "doc, status",
    [
        ({"name": "no id"}, 400),
        ({"id": 9999, "name": "x"}, 404),
        ({"id": "abc"}, 400),
        ({"id": True}, 400),
        ({"id": 1, "count": -1}, 400),
        ({"id": 1, "count": "many"}, 400),
        ({"id": 1, "count": 10**12}, 400),
        ({"id": 1, "count": 2, "remaining": 3}, 400),
        ({"id": 1, "draft": "maybe"}, 400),
        ({"id": 1, "name": ["x"]}, 400),
        ({"id": 1, "sets": "a.gcode"}, 400),
        ({"id": 1, "sets": [None]}, 400),
        ({"id": 1, "sets": [{"count": 1}]}, 400),  # a new set needs a path
        ({"id": 1, "sets": [{"path": "../../etc/passwd"}]}, 400),
        ({"id": 1, "sets": [{"path": "ok.gcode", "materials": [1]}]}, 400),
        ({"id": 1, "sets": [{"path": "ok.gcode", "profiles": [None]}]}, 400),
        ({"id": 1, "sets": [{"id": 4242}]}, 404),
        ({"id": 1, "sets": [{"id": "x"}]}, 400),
        ({"id": 1, "queue": 5}, 400),
        ({"id": "1", "name": "x", "queue": "nope"}, 404),  # no LAN queue of that name here
    ],
)
async def test_job_edit_rejects_bad_shapes_and_changes_nothing(api, doc, status):
    added = await add_set(api, "a.gcode", jobName="J")
    assert added["job_id"] == 1
    before = await state(api)
    await err(await edit(api, doc), status)
    assert await state(api) == before
    assert (await err(await api.post(CP + "/job/edit", data={"json": "{not json"}), 400))


# --- job/mv ------------------------------------------------------------------------------


async def test_job_mv_front_after_and_unknown(api):
    ids = [(await add_set(api, f"{n}.gcode", jobName=n))["job_id"] for n in "abc"]
    a, b, c = ids
    await ok_json(await api.post(CP + "/job/mv", data={"id": str(c), "after_id": ""}))
    assert [j["id"] for j in await local_jobs(api)] == [c, a, b]
    assert await ok_json(await api.post(CP + "/job/mv", data={"id": str(c), "after_id": str(a)})) == "OK"
    assert [j["id"] for j in await local_jobs(api)] == [a, c, b]
    await ok_json(await api.post(CP + "/job/mv", data={"id": str(a), "after_id": str(b), "src_queue": "local", "dest_queue": "local"}))
    assert [j["id"] for j in await local_jobs(api)] == [c, b, a]
    before = await state(api)
    await err(await api.post(CP + "/job/mv", data={"id": "999", "after_id": ""}), 404)
    await err(await api.post(CP + "/job/mv", data={"id": str(a), "after_id": "999"}), 404)
    await err(await api.post(CP + "/job/mv", data={"id": "x"}), 400)
    await err(await api.post(CP + "/job/mv", data={}), 400)
    await err(await api.post(CP + "/job/mv", data={"id": str(a), "dest_queue": "LAN"}), 404)
    ranks = [j["rank"] for j in (await state(api))["queues"][0]["jobs"]]
    assert len(set(ranks)) == len(ranks)
    assert await state(api) == before


# --- job/rm and job/reset ----------------------------------------------------------------


async def test_job_rm_archives_then_deletes(api, node_factory):
    a = (await add_set(api, "a.gcode"))["job_id"]
    b = (await add_set(api, "b.gcode"))["job_id"]
    c = (await add_set(api, "c.gcode"))["job_id"]
    r = await api.post(CP + "/job/rm", data=[("queue", "local"), ("job_ids[]", str(a)), ("job_ids[]", str(b))])
    assert (await ok_json(r)) == {"jobs_deleted": 2}
    assert [j["id"] for j in await local_jobs(api)] == [c]
    # archived, not gone: archived jobs are not movable or editable through the local queue
    await err(await edit(api, {"id": a, "name": "x"}), 404)
    await err(await api.post(CP + "/set/add", data={"path": "x.gcode", "job": str(a)}), 404)
    # a second rm of an archived job deletes it for good; unknown ids are skipped
    assert (await ok_json(await api.post(CP + "/job/rm", data={"job_ids": json.dumps([a, 12345])}))) == {"jobs_deleted": 1}
    assert (await ok_json(await api.post(CP + "/job/rm", data={"job_ids": f"{a}"}))) == {"jobs_deleted": 0}
    await err(await api.post(CP + "/job/rm", data={"job_ids[]": "x"}), 400)
    await err(await api.post(CP + "/job/rm", data={"job_ids": "[null]"}), 400)
    assert [j["id"] for j in await local_jobs(api)] == [c]


async def test_job_reset(api, node_factory):
    client, node = await node_factory()
    added = await add_set(client, "a.gcode", count=2)
    jid, s = added["job_id"], added["set_"]
    await count_success(node.store, jid, s["id"])
    job = (await local_jobs(client))[0]
    assert job["sets"][0]["remaining"] == 1 and job["sets"][0]["completed"] == 1
    r = await client.post(CP + "/job/reset", data=[("queue", "local"), ("job_ids[]", str(jid)), ("job_ids[]", "777")])
    assert await ok_json(r) == {"num_updated": 1}
    job = (await local_jobs(client))[0]
    assert job["sets"][0]["remaining"] == 2 and job["sets"][0]["completed"] == 0 and job["remaining"] == 1
    await err(await client.post(CP + "/job/reset", data={"job_ids[]": "1.5"}), 400)


# --- export and import -------------------------------------------------------------------


async def test_export_import_round_trip(api):
    assert (await upload(api, "a.gcode")).status == 201
    assert (await upload(api, "b.gcode", b"G1 X1\n" * 100)).status == 201
    jid = (await add_set(api, "a.gcode", count=2, jobName="My Job!", materials="PLA_red_#ff0000"))["job_id"]
    await add_set(api, "b.gcode", job=jid, profiles="MK3,MK4")
    await ok_json(await edit(api, {"id": jid, "count": 3}))
    body = await ok_json(await api.post(CP + "/job/export", data={"job_ids[]": str(jid)}))
    assert body["errors"] == [] and len(body["paths"]) == 1
    gjob = body["paths"][0]
    assert gjob.endswith(".gjob")
    r = await api.get(f"/api/files/local/{gjob}")
    entry = await ok_json(r)
    assert entry["path"] == gjob and entry["size"] > 0 and entry["hash"]
    # the manifest inside names every file and its counts
    node = api.server.app[__import__("lanqueue.api.keys", fromlist=["NODE"]).NODE]
    with zipfile.ZipFile(node.files.resolve(gjob)) as z:
        manifest = json.loads(z.read("manifest.json"))
        assert manifest["name"] == "My Job!" and manifest["count"] == 3
        assert [(s["path"], s["count"]) for s in manifest["sets"]] == [("a.gcode", 2), ("b.gcode", 1)]
        assert manifest["sets"][0]["materials"] == ["PLA_red_#ff0000"] and manifest["sets"][1]["profiles"] == ["MK3", "MK4"]
        assert z.read("a.gcode") == GCODE
    job = await ok_json(await api.post(CP + "/job/import", data={"path": gjob, "queue": "local"}))
    assert job["name"] == "My Job!" and job["count"] == 3 and job["draft"] is True and job["id"] != jid
    assert [s["count"] for s in job["sets"]] == [2, 1]
    assert job["sets"][0]["materials"] == ["PLA_red_#ff0000"]
    for s in job["sets"]:
        assert s["missing_file"] is False
        assert (await api.get(f"/api/files/local/{s['path']}")).status == 200
    # export of an unknown job and of a job whose file is gone: errors, no 500
    body = await ok_json(await api.post(CP + "/job/export", data={"job_ids": "999"}))
    assert body["paths"] == [] and len(body["errors"]) == 1
    missing = (await add_set(api, "gone.gcode"))["job_id"]
    body = await ok_json(await api.post(CP + "/job/export", data={"job_ids[]": str(missing)}))
    assert body["paths"] == [] and "gone.gcode" in body["errors"][0]


def _zip(members: dict[str, bytes], manifest: dict | None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        if manifest is not None:
            z.writestr("manifest.json", json.dumps(manifest))
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    "members, manifest",
    [
        ({"../../evil.gcode": GCODE}, {"name": "x", "sets": [{"path": "../../evil.gcode", "count": 1}]}),
        ({"/abs.gcode": GCODE}, {"name": "x", "sets": [{"path": "/abs.gcode", "count": 1}]}),
        ({"a.gcode": GCODE}, None),
        ({"a.gcode": GCODE}, {"name": "x", "sets": [{"path": "missing.gcode"}]}),
        ({"a.gcode": GCODE}, {"name": "x", "sets": [{"path": "a.gcode", "count": -1}]}),
        ({"a.gcode": GCODE}, {"name": "x", "sets": [{"path": "a.gcode", "materials": "PLA"}]}),
        ({"a.gcode": GCODE}, {"name": 5, "sets": []}),
        ({"a.gcode": GCODE}, ["not", "an", "object"]),
        ({"a.exe": b"MZ"}, {"name": "x", "sets": [{"path": "a.exe"}]}),
        ({"a.gcode": GCODE, "b.exe": b"MZ"}, {"name": "x", "sets": [{"path": "a.gcode"}, {"path": "b.exe"}]}),
        ({"a.gcode": GCODE, "sub/../../x.gcode": GCODE}, {"name": "x", "sets": [{"path": "a.gcode"}]}),
        # a zip bomb: small on disk, far larger than the node accepts once inflated
        ({"bomb.gcode": b"\0" * (6 * 1024 * 1024)}, {"name": "x", "sets": [{"path": "bomb.gcode"}]}),
    ],
)
async def test_import_rejects_malicious_gjob(api, members, manifest):
    blob = _zip(members, manifest)
    assert len(blob) < 1024 * 1024
    assert (await upload(api, "evil.gjob", blob)).status == 201
    files_before = [f["path"] for f in (await ok_json(await api.get("/api/files")))["files"]]
    before = await state(api)
    r = await api.post(CP + "/job/import", data={"path": "evil.gjob"})
    assert r.status in (400, 413, 415), await r.text()
    await err(r, r.status)
    assert await state(api) == before
    assert [f["path"] for f in (await ok_json(await api.get("/api/files")))["files"]] == files_before


async def test_import_corrupt_member_is_a_400(api):
    blob = bytearray(_zip({"a.gcode": GCODE * 50, "b.gcode": b"G1 X2\n" * 500},
                          {"name": "x", "sets": [{"path": "a.gcode"}, {"path": "b.gcode"}]}))
    at = blob.index(b"b.gcode") + len(b"b.gcode") + 2  # b's local header name, then its deflated data
    blob[at:at + 8] = b"\xff" * 8
    assert (await upload(api, "bad.gjob", bytes(blob))).status == 201
    await err(await api.post(CP + "/job/import", data={"path": "bad.gjob"}), 400)
    assert [f["path"] for f in (await ok_json(await api.get("/api/files")))["files"]] == ["bad.gjob"]
    assert await local_jobs(api) == []


async def test_import_bad_requests(api):
    await err(await api.post(CP + "/job/import", data={"path": "nothere.gjob"}), 404)
    await err(await api.post(CP + "/job/import", data={"path": "../x.gjob"}), 400)
    await err(await api.post(CP + "/job/import", data={}), 400)
    assert (await upload(api, "a.gcode")).status == 201
    await err(await api.post(CP + "/job/import", data={"path": "a.gcode"}), 400)  # not a zip


# --- history, queues ---------------------------------------------------------------------


async def test_history_get_and_reset(node_factory):
    client, node = await node_factory()
    assert await ok_json(await client.get(CP + "/history/get")) == []
    r1 = await node.store.begin_run("local", 1, "J", 1, "a.gcode")
    await node.store.end_run(r1, "success")
    await node.store.begin_run("local", 1, "J", 2, "b.gcode")
    runs = await ok_json(await client.get(CP + "/history/get"))
    assert [r["set_path"] for r in runs] == ["b.gcode", "a.gcode"]  # newest first
    assert set(runs[0]) >= {"run_id", "queue_name", "job_name", "set_path", "start", "end", "result", "active"}
    assert runs[0]["end"] is None and runs[0]["active"] is True
    assert runs[1]["result"] == "success" and runs[1]["active"] is False
    assert await ok_json(await client.post(CP + "/history/reset")) == "OK"
    runs = await ok_json(await client.get(CP + "/history/get"))
    assert [r["set_path"] for r in runs] == ["b.gcode"]  # the open run stays


async def test_queues_get_and_edit(api):
    assert await ok_json(await api.get(CP + "/queues/get")) == [{"name": "local", "addr": None, "strategy": "IN_ORDER"}]
    r = await api.post(CP + "/queues/edit", data={"json": json.dumps([{"name": "local", "strategy": "LEAST_MANUAL"}])})
    assert await ok_json(r) == "OK"
    assert (await ok_json(await api.get(CP + "/queues/get")))[0]["strategy"] == "LEAST_MANUAL"
    before = await ok_json(await api.get(CP + "/queues/get"))
    for doc in (
        [],  # local cannot be removed
        [{"name": "other"}],
        [{"name": "local"}, {"name": "local"}],
        [{"name": "local"}, {"name": "archive"}],
        [{"name": "local", "strategy": "RANDOM"}],
        [{"strategy": "IN_ORDER"}],
        [None],
        {"name": "local"},
        [{"name": "local"}, {"name": "LAN", "addr": "1.2.3.4:5", "secret": "s"}],  # no LAN service here
    ):
        r = await api.post(CP + "/queues/edit", data={"json": json.dumps(doc)})
        await err(r, 400)
    await err(await api.post(CP + "/queues/edit", data={"json": "nope"}), 400)
    assert await ok_json(await api.get(CP + "/queues/get")) == before


# --- automation, materials ---------------------------------------------------------------


async def test_automation_get_edit_simulate(api):
    auto = await ok_json(await api.get(CP + "/automation/get"))
    assert set(auto) == {"scripts", "preprocessors", "events"}
    assert "continuousprint_success" in auto["events"]
    new = {
        "scripts": {"clear": "G28\nM84", "hot": "M104 S{temp}"},
        "preprocessors": {"if_hot": "{'temp': 200} if current['bed_temp'] is None else False"},
        "events": {"continuousprint_success": [{"script": "clear", "preprocessor": ""}],
                   "continuousprint_finish": [{"script": "hot", "preprocessor": "if_hot"}]},
    }
    assert await ok_json(await api.post(CP + "/automation/edit", data={"json": json.dumps(new)})) == "OK"
    got = await ok_json(await api.get(CP + "/automation/get"))
    assert got["scripts"] == new["scripts"] and got["events"]["continuousprint_success"] == [{"script": "clear", "preprocessor": ""}]
    assert got["events"]["continuousprint_activate"] == []
    for bad in (
        {"scripts": {"a": 5}},
        {"scripts": "G28"},
        {"events": {"no_such_event": []}},
        {"events": {"continuousprint_success": [{"script": "missing"}]}},
        {"scripts": {"a": "G28"}, "events": {"continuousprint_success": [{"script": "a", "preprocessor": "nope"}]}},
        {"unknown": {}},
        [1, 2],
    ):
        await err(await api.post(CP + "/automation/edit", data={"json": json.dumps(bad)}), 400)
    await err(await api.post(CP + "/automation/edit", data={"json": "{"}), 400)
    await err(await api.post(CP + "/automation/edit", data={}), 400)
    assert await ok_json(await api.get(CP + "/automation/get")) == got
    sim = await ok_json(await api.post(CP + "/automation/simulate", data={
        "symtable": json.dumps({"x": 3}),
        "automation": json.dumps([["G1 X{x}", "{'x': x * 2}"], ["M117 skipped", "False"], ["M117 plain", None]]),
    }))
    assert set(sim) == {"gcode", "symtable_diff", "stdout", "stderr"}
    assert "G1 X6" in sim["gcode"] and "skipped" not in sim["gcode"] and "M117 plain" in sim["gcode"]
    await err(await api.post(CP + "/automation/simulate", data={"automation": json.dumps("G28")}), 400)
    await err(await api.post(CP + "/automation/simulate", data={"automation": "[]", "symtable": "[1]"}), 400)
    await err(await api.post(CP + "/automation/simulate", data={"automation": "[]", "symtable": json.dumps({"_x": 1})}), 400)
    await err(await api.post(CP + "/automation/simulate", data={}), 400)


async def test_materials(api):
    assert await ok_json(await api.get(CP + "/materials/get")) == []
    r = await api.post(CP + "/materials/set", data=[("materials[]", "PLA_red_#ff0000"), ("materials[]", "")])
    assert await ok_json(r) == ["PLA_red_#ff0000", None]
    assert await ok_json(await api.get(CP + "/materials/get")) == ["PLA_red_#ff0000", None]
    assert await ok_json(await api.post(CP + "/materials/set", data={"materials": json.dumps(["ABS", None])})) == ["ABS", None]
    await err(await api.post(CP + "/materials/set", data={"materials": json.dumps([1])}), 400)
    await err(await api.post(CP + "/materials/set", data={"materials": ",".join(["PLA"] * 17)}), 400)
    assert await ok_json(await api.get(CP + "/materials/get")) == ["ABS", None]


# --- uploads and the file routes ---------------------------------------------------------


async def test_upload_plain_select_and_print(node_factory):
    api, node = await node_factory()
    r = await upload(api, "part one.gcode", path="plates/", select="true")
    body = await ok_json(r, 201)
    entry = body["files"]["local"]
    assert entry["path"] == "plates/part_one.gcode" and entry["name"] == "part_one.gcode"
    assert entry["origin"] == "local" and entry["type"] == "machinecode" and entry["size"] == len(GCODE)
    assert r.headers["Location"].endswith("/api/files/local/plates/part_one.gcode")
    assert body["done"] is True and body["effectiveSelect"] is True and body["effectivePrint"] is False
    assert node.selected_file == "plates/part_one.gcode"
    assert await local_jobs(api) == []
    r = await upload(api, "p.gcode", print="True")
    body = await ok_json(r, 201)
    assert body["effectivePrint"] is True
    jobs = await local_jobs(api)
    assert len(jobs) == 1 and jobs[0]["draft"] is False and jobs[0]["id"] == body["lanqueue_job_id"]
    assert jobs[0]["sets"][0]["path"] == "p.gcode" and jobs[0]["sets"][0]["missing_file"] is False
    listing = await ok_json(await api.get("/api/files"))
    assert sorted(f["path"] for f in listing["files"]) == ["p.gcode", "plates/part_one.gcode"]
    assert listing["free"] > 0 and listing["total"] >= listing["free"]
    local = await ok_json(await api.get("/api/files/local"))
    assert local["files"] == listing["files"]  # `free` moves with whatever else writes to the disk
    info = await ok_json(await api.get("/api/files/local/plates/part_one.gcode"))
    assert info["hash"] and len(info["hash"]) == 64 and info["size"] == len(GCODE)


async def test_upload_refusals_leave_nothing(node_factory):
    api, node = await node_factory(max_upload_mb=1)
    r = await upload(api, "big.gcode", b"G1 X1\n" * (200 * 1024))  # 1.2 MiB
    await err(r, 413)
    await err(await upload(api, "../../etc/passwd.gcode"), 400)
    await err(await upload(api, "x.gcode", path="../.."), 400)
    await err(await upload(api, "model.stl", b"solid x\n"), 415)
    await err(await upload(api, "noext"), 415)
    await err(await api.post("/api/files/local", data={"path": "x"}), 400)  # no file part
    await err(await api.post("/api/files/local", data=b"garbage", headers={"Content-Type": "multipart/form-data; boundary=zzz"}), 400)
    await err(await api.post("/api/files/local", data=b"x", headers={"Content-Type": "text/plain"}), 400)
    assert (await ok_json(await api.get("/api/files")))["files"] == []
    leftovers = [p for p in node.files.root.rglob("*") if p.is_file()]
    assert leftovers == []
    assert await local_jobs(api) == []


async def test_upload_refused_after_its_file_part_leaves_nothing(node_factory):
    api, node = await node_factory()
    two = aiohttp.FormData()
    two.add_field("file", GCODE, filename="one.gcode")
    two.add_field("file", GCODE, filename="two.gcode")
    await err(await api.post("/api/files/local", data=two), 400)
    long_field = aiohttp.FormData()
    long_field.add_field("file", GCODE, filename="one.gcode")
    long_field.add_field("select", "x" * 10_000)
    await err(await api.post("/api/files/local", data=long_field), 400)
    # a control character in a part's headers: aiohttp refuses the header; a 400, not a 500
    raw = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\x1f.gcode\"\r\n\r\nG28\r\n--b--\r\n")
    await err(await api.post("/api/files/local", data=raw, headers={"Content-Type": "multipart/form-data; boundary=b"}), 400)
    assert (await ok_json(await api.get("/api/files")))["files"] == []
    assert [p for p in node.files.root.rglob("*") if p.is_file()] == []
    # a file where a folder is wanted, and a folder where a file is wanted: 409, nothing written
    assert (await upload(api, "a.gcode")).status == 201
    assert (await upload(api, "b.gcode", path="dir.gcode")).status == 201
    await err(await upload(api, "x.gcode", path="a.gcode"), 409)
    await err(await upload(api, "dir.gcode"), 409)
    listing = (await ok_json(await api.get("/api/files")))["files"]
    assert sorted(f["path"] for f in listing) == ["a.gcode", "dir.gcode/b.gcode"]


async def test_file_get_delete_and_missing_flag(api):
    assert (await upload(api, "a.gcode")).status == 201
    added = await add_set(api, "a.gcode")
    assert added["set_"]["missing_file"] is False
    await err(await api.get("/api/files/local/nothere.gcode"), 404)
    await err(await api.delete("/api/files/local/nothere.gcode"), 404)
    await err(await api.get("/api/files/local/..%2F..%2Fetc%2Fpasswd"), 400)
    r = await api.delete("/api/files/local/a.gcode")
    assert r.status == 204
    await err(await api.get("/api/files/local/a.gcode"), 404)
    job = (await local_jobs(api))[0]
    assert job["sets"][0]["missing_file"] is True
    assert (await upload(api, "a.gcode")).status == 201
    assert (await local_jobs(api))[0]["sets"][0]["missing_file"] is False
    # sd sets live on the printer's card: never flagged missing
    sd = await add_set(api, "card.gcode", sd="true")
    assert sd["set_"]["missing_file"] is False and sd["set_"]["sd"] is True


async def test_file_select_command(node_factory):
    api, node = await node_factory()
    assert (await upload(api, "a.gcode")).status == 201
    assert (await api.post("/api/files/local/a.gcode", json={"command": "select"})).status == 204
    assert node.selected_file == "a.gcode"
    await err(await api.post("/api/files/local/a.gcode", json={"command": "slice"}), 400)
    await err(await api.post("/api/files/local/a.gcode", json={"command": "select", "print": "yes"}), 400)
    await err(await api.post("/api/files/local/a.gcode", data="nope"), 400)
    await err(await api.post("/api/files/local/b.gcode", json={"command": "select"}), 404)


# --- a stock OctoPrint client library ------------------------------------------------------


def test_octorest_client_sees_an_octoprint_host(node_process, tmp_path):
    from octorest import OctoRest

    node = node_process()
    client = OctoRest(url=node.url, apikey=API_KEY)
    version = client.version
    assert version["api"] and "lanqueue" in version["text"]
    gcode = tmp_path / "cube.gcode"
    gcode.write_bytes(GCODE)
    uploaded = client.upload(str(gcode))
    assert uploaded["done"] is True and uploaded["files"]["local"]["path"] == "cube.gcode"
    listing = client.files()
    assert [f["path"] for f in listing["files"]] == ["cube.gcode"]
    assert client.files("cube.gcode")["name"] == "cube.gcode"
    info = client.job_info()
    assert "job" in info and "progress" in info and isinstance(info["state"], str)
    conn = client.connection_info()
    assert conn["current"]["state"] and conn["options"]["baudrates"]
    client.select("cube.gcode")
    assert client.job_info()["job"]["file"]["name"] == "cube.gcode"
    client.delete("cube.gcode")
    assert client.files()["files"] == []


async def test_state_follows_every_write_despite_its_cache(node_factory):
    """state/get is cached by store and file-store generation: writes through either show."""
    api, node = await node_factory()
    added = await add_set(api, "late.gcode")
    first = await state(api)
    assert first["queues"][0]["jobs"][0]["sets"][0]["missing_file"] is True
    assert await state(api) == first  # the cached answer is the same answer

    async def chunks():
        yield GCODE

    await node.files.save("late.gcode", chunks())  # as a LAN peer download would, no store write
    assert (await local_jobs(api))[0]["sets"][0]["missing_file"] is False
    await count_success(node.store, added["job_id"], added["set_"]["id"])  # the driver's write
    assert (await local_jobs(api))[0]["sets"][0]["completed"] == 1
    from lanqueue.api.views import state_view

    view = await state_view(node)
    view["queues"][0]["jobs"].clear()  # a caller may change its copy
    assert len(await local_jobs(api)) == 1


async def test_deeply_nested_json_is_a_400_everywhere(api):
    deep = "[" * 100_000 + "]" * 100_000
    as_json = {"Content-Type": "application/json"}
    for path in (CP + "/automation/external", CP + "/set/add", CP + "/job/edit", "/api/job", "/api/connection",
                 "/api/printer/command"):
        r = await api.post(path, data=deep, headers=as_json)
        assert r.status in (400, 413), (path, r.status)
        await err(r, r.status)
    for field in ("metadata", "materials", "profiles"):
        await err(await api.post(CP + "/set/add", data={"path": "a.gcode", field: "[" * 5000 + "]" * 5000}), 400)
    await err(await api.post(CP + "/job/edit", data={"json": "[" * 100_000}), 400)
    assert (await upload(api, "a.gcode")).status == 201
    await err(await api.post("/api/files/local/a.gcode", data=deep, headers=as_json), 400)
    await err(await api.post(CP + "/automation/external", data=b"{}" + b" " * 70_000, headers=as_json), 413)
    assert await local_jobs(api) == []


async def test_upload_path_field_after_the_file_part_is_honoured(node_factory):
    """curl -F keeps the order given, so `path` may follow the file: it still decides the
    folder, and a traversing `path` is refused with nothing written."""
    api, node = await node_factory()
    after = aiohttp.FormData()
    after.add_field("file", GCODE, filename="late.gcode", content_type="application/octet-stream")
    after.add_field("path", "plates/")
    body = await ok_json(await api.post("/api/files/local", data=after), 201)
    assert body["files"]["local"]["path"] == "plates/late.gcode"
    bad = aiohttp.FormData()
    bad.add_field("file", GCODE, filename="evil.gcode", content_type="application/octet-stream")
    bad.add_field("path", "../..")
    await err(await api.post("/api/files/local", data=bad), 400)
    listing = (await ok_json(await api.get("/api/files")))["files"]
    assert [f["path"] for f in listing] == ["plates/late.gcode"]


async def test_download_link_of_a_file_entry_serves_the_stored_bytes(api):
    """Every file entry's refs.download must be a working link (OctoPrint clients follow it),
    with the key like every other route, and only for files inside the store."""
    body = await ok_json(await upload(api, "dl.gcode", path="plates"), 201)
    link = body["files"]["local"]["refs"]["download"]
    path = link.split("://", 1)[1].split("/", 1)[1]
    r = await api.get("/" + path)
    assert r.status == 200 and await r.read() == GCODE
    assert (await api.get("/" + path, headers={"X-Api-Key": "wrong"})).status == 403
    await err(await api.get("/downloads/files/local/nothere.gcode"), 404)
    await err(await api.get("/downloads/files/local/..%2F..%2Fapi_key"), 400)
    await err(await api.get("/downloads/files/local/.tmp/x"), 400)


async def test_driver_edit_refuses_unknown_and_out_of_range_settings(api):
    import json as _json

    before = await (await api.get(CP + "/driver/get")).json()
    for bad in ({"bogus": 1}, {"cooldown_below": 99999}, {"recheck_every": 0}, {"max_retries": -1}, {"cooldown_timeout": "soon"}):
        r = await api.post(CP + "/driver/edit", data={"json": _json.dumps(bad)})
        assert r.status == 400 and "error" in await r.json(), bad
    assert await (await api.get(CP + "/driver/get")).json() == before
    r = await api.post(CP + "/driver/edit", data={"json": _json.dumps({"cooldown": True, "cooldown_below": 30})})
    assert r.status == 200 and (await r.json())["cooldown_below"] == 30.0


async def test_simulate_symtable_must_be_an_object(api):
    import json as _json

    r = await api.post(CP + "/automation/simulate", data={"symtable": "[]", "automation": _json.dumps([["G28", "True"]])})
    assert r.status == 400


async def test_job_edit_of_remaining_alone_cannot_exceed_the_count(api):
    """`remaining` sent without `count` is checked against the stored count, for the job and its
    sets; a refused edit changes nothing."""
    added = await add_set(api, "a.gcode", count="2")
    jid, sid = added["job_id"], added["set_"]["id"]
    before = await local_jobs(api)
    await err(await edit(api, {"id": jid, "remaining": 50}), 400)
    await err(await edit(api, {"id": jid, "name": "renamed", "sets": [{"id": sid, "remaining": 40}]}), 400)
    assert await local_jobs(api) == before
    job = await ok_json(await edit(api, {"id": jid, "sets": [{"id": sid, "remaining": 1}]}))
    assert job["sets"][0]["remaining"] == 1 and job["remaining"] == 1
