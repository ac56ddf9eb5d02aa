"""OctoPrint's printer, job and connection routes against a node with its virtual printer."""

from __future__ import annotations

import asyncio

import aiohttp

from conftest import CP


async def wait_for(predicate, timeout=20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := await predicate()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)
    return value


async def job_state(api):
    return (await (await api.get("/api/job")).json())["state"]


async def upload(api, name, body):
    form = aiohttp.FormData()
    form.add_field("file", body, filename=name)
    r = await api.post("/api/files/local", data=form)
    assert r.status == 201


async def operational(api, node):
    async def ready():
        return node.printer.state.name == "OPERATIONAL"
    await wait_for(ready)


async def test_printer_state_and_commands(node_factory):
    api, node = await node_factory()
    await operational(api, node)
    r = await api.get("/api/printer")
    body = await r.json()
    assert r.status == 200 and body["state"]["text"] == "Operational"
    assert body["state"]["flags"]["ready"] is True and "tool0" in body["temperature"]
    r = await api.post("/api/printer/command", json={"commands": ["M104 S200", "M140 S60"]})
    assert r.status == 204

    async def heating():
        t = (await (await api.get("/api/printer")).json())["temperature"]
        return t["tool0"]["target"] == 200 and t["bed"]["target"] == 60
    await wait_for(heating)
    assert (await api.post("/api/printer/command", json={"command": 5})).status == 400


async def test_direct_print_pause_resume_cancel(node_factory):
    api, node = await node_factory(virtual_speed=5.0)
    await operational(api, node)
    body = "\n".join(["G28"] + [f"G1 X{i % 100} Y{i % 90} F1200" for i in range(300)]) + "\n"
    await upload(api, "direct.gcode", body.encode())
    assert (await api.post("/api/job", json={"command": "cancel"})).status == 409  # nothing printing
    r = await api.post("/api/files/local/direct.gcode", json={"command": "select", "print": True})
    assert r.status == 204

    async def printing():
        return await job_state(api) == "Printing"
    await wait_for(printing)
    job = await (await api.get("/api/job")).json()
    assert job["job"]["file"]["name"] == "direct.gcode" and job["progress"]["filepos"] is not None
    assert (await api.post("/api/job", json={"command": "pause", "action": "resume"})).status == 409
    assert (await api.post("/api/job", json={"command": "pause", "action": "pause"})).status == 204

    async def paused():
        return await job_state(api) == "Paused"
    await wait_for(paused)
    assert (await api.post("/api/job", json={"command": "pause", "action": "toggle"})).status == 204
    await wait_for(printing)
    assert (await api.post("/api/job", json={"command": "cancel"})).status == 204

    async def stopped():
        return await job_state(api) == "Operational"
    await wait_for(stopped)
    executed = node.printer.virtual.model.executed
    assert "M104 S0" in executed  # the cancel script ran
    # a direct print is not a queue print: no run in history
    assert await (await api.get(CP + "/history/get")).json() == []


async def test_direct_print_refused_while_managing(node_factory):
    api, node = await node_factory()
    await operational(api, node)
    await upload(api, "a.gcode", b"G28\n")
    await api.post(CP + "/set_active", data={"active": "true"})
    r = await api.post("/api/files/local/a.gcode", json={"command": "select", "print": True})
    assert r.status == 409 and "error" in await r.json()


async def test_connection_disconnect_and_connect(node_factory):
    api, node = await node_factory()
    await operational(api, node)
    info = await (await api.get("/api/connection")).json()
    assert info["current"]["state"] == "Operational" and info["current"]["port"] == "virtual"
    assert (await api.post("/api/connection", json={"command": "disconnect"})).status == 204

    async def offline():
        return (await api.get("/api/printer")).status == 409
    await wait_for(offline)
    assert (await api.post("/api/connection", json={"command": "connect"})).status == 204
    await operational(api, node)
    assert (await api.post("/api/connection", json={"command": "explode"})).status == 400


async def test_upload_over_the_file_being_printed_is_a_409(node_factory):
    """OctoPrint answers 409 to an upload that would overwrite the file being printed."""
    api, node = await node_factory(virtual_speed=5.0)
    await operational(api, node)
    body = ("\n".join(["G28"] + [f"G1 X{i % 100} Y{i % 90} F1200" for i in range(300)]) + "\n").encode()
    await upload(api, "busy.gcode", body)
    r = await api.post("/api/files/local/busy.gcode", json={"command": "select", "print": True})
    assert r.status == 204

    async def printing():
        return await job_state(api) == "Printing"
    await wait_for(printing)
    form = aiohttp.FormData()
    form.add_field("file", b"G28\n", filename="busy.gcode", content_type="application/octet-stream")
    r = await api.post("/api/files/local", data=form)
    assert r.status == 409 and "error" in await r.json()
    assert node.files.resolve("busy.gcode").read_bytes() == body
    assert (await api.post("/api/job", json={"command": "cancel"})).status == 204


async def test_printer_profiles_answer_as_octoprint(node_factory):
    """Cura's OctoPrint connection asks /api/printerprofiles for the current profile."""
    api, node = await node_factory(profile="Prusa MK3S")
    r = await api.get("/api/printerprofiles")
    assert r.status == 200 and r.content_type == "application/json"
    profiles = (await r.json())["profiles"]
    current = [p for p in profiles.values() if p["current"]]
    assert len(current) == 1 and current[0]["name"] == "Prusa MK3S" and current[0]["extruder"]["count"] == 1
    assert (await api.get("/api/printerprofiles", headers={"X-Api-Key": "wrong"})).status == 403


async def test_a_refused_select_and_print_leaves_the_selection_alone(node_factory):
    api, node = await node_factory()
    await operational(api, node)
    await upload(api, "a.gcode", b"G28\n")
    await upload(api, "b.gcode", b"G28\n")
    assert (await api.post("/api/files/local/a.gcode", json={"command": "select"})).status == 204
    assert (await api.post("/api/connection", json={"command": "disconnect"})).status == 204

    async def offline():
        return await job_state(api) == "Offline"
    await wait_for(offline)
    r = await api.post("/api/files/local/b.gcode", json={"command": "select", "print": True})
    assert r.status == 409
    job = await (await api.get("/api/job")).json()
    assert job["job"]["file"]["name"] == "a.gcode" and node.selected_file == "a.gcode"


async def test_job_after_a_print_shows_the_printed_file_at_100(node_factory):
    """OctoPrint keeps the printed file selected with completion 100 once a print ends, also
    when the queue's driver started it while another file was selected."""
    api, node = await node_factory()
    await operational(api, node)
    await upload(api, "first.gcode", b"G28\nG1 X1\n")
    await upload(api, "queued.gcode", b"G28\n" + b"G1 X2 Y2\n" * 20)
    r = await api.post("/api/files/local/first.gcode", json={"command": "select", "print": True})
    assert r.status == 204, await r.text()

    async def done_with(name):
        body = await (await api.get("/api/job")).json()
        return body["state"] == "Operational" and body["job"]["file"]["path"] == name and body

    body = await wait_for(lambda: done_with("first.gcode"))
    assert body["progress"]["completion"] == 100.0 and body["progress"]["printTimeLeft"] == 0
    assert body["job"]["file"]["size"] == len(b"G28\nG1 X1\n")
    # the queue prints another file: that one is then the selected, finished one
    r = await api.post(CP + "/set/add", data={"path": "queued.gcode", "count": "1", "jobDraft": "false"})
    assert r.status == 200
    await api.post(CP + "/set_active", data={"active": "true"})
    body = await wait_for(lambda: done_with("queued.gcode"))
    assert body["progress"]["completion"] == 100.0 and body["job"]["file"]["name"] == "queued.gcode"


async def test_405_answers_name_the_allowed_methods(api):
    r = await api.delete("/api/job")
    assert r.status == 405
    assert set(r.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    assert "error" in await r.json()
