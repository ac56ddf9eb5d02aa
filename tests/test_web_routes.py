"""The web page's routes without a browser: static files, the event stream, /metrics."""

from __future__ import annotations

import asyncio
import json
import re
from typing import ClassVar

from conftest import API_KEY, CP

from lanqueue.api import web as web_module


async def test_page_and_static_files_are_public(api):
    for path in ("/", "/index.html"):
        r = await api.get(path, headers={"X-Api-Key": ""})
        assert r.status == 200 and r.content_type == "text/html"
        body = await r.text()
        assert "/static/app.js" in body and "/static/style.css" in body
        # before the first live update the page says it is connecting, not that anything is offline
        assert 'id="live-text">Connecting…<' in body and 'id="printer-state"' in body and ">Offline<" not in body
        assert "http://" not in body and "https://" not in body  # nothing loaded from elsewhere
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        assert r.headers["Referrer-Policy"] == "no-referrer"
    # app.js is an ES module; every module it imports (transitively) is served as JavaScript
    todo, served = ["app.js"], {}
    while todo:
        name = todo.pop()
        r = await api.get(f"/static/{name}", headers={"X-Api-Key": ""})
        assert r.status == 200 and r.content_type == "text/javascript", name
        served[name] = await r.text()
        todo += [m for m in re.findall(r'^import (?:.* from )?"\./([\w.-]+)";$', served[name], re.M)
                 if m not in served and m not in todo]
    assert {"core.js", "live.js", "queues.js", "settings.js"} <= set(served)
    assert "EventSource" in served["live.js"]
    r = await api.get("/static/style.css", headers={"X-Api-Key": ""})
    assert r.status == 200 and r.content_type == "text/css"
    assert (await api.get("/favicon.ico", headers={"X-Api-Key": ""})).status == 200


async def _raw_get(client, target: str) -> tuple[int, bytes]:
    """GET with the request target sent byte for byte (HTTP clients normalise `..` away)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_static_refuses_traversal_and_unknown_names(api):
    for target in (
        "/static/..%2Fapi%2Fweb.py",
        "/static/%2e%2e%2fapi%2fweb.py",
        "/static/..",
        "/static/.hidden",
        "/static/nope.js",
        "/static/../api/web.py",
        "/static/../../lanqueue/api/web.py",
        "/static/..%5capi%5cweb.py",
        "/static/app.js%00.png",
        "/static//etc/passwd",
    ):
        status, body = await _raw_get(api, target)
        assert status in (400, 403, 404), target  # 403: resolved outside /static/, the key is required
        assert b"import" not in body and b"root:" not in body, target
    status, body = await _raw_get(api, "/static/live.js")
    assert status == 200 and b"EventSource" in body


async def test_events_need_the_key(api):
    r = await api.get("/lanqueue/events", headers={"X-Api-Key": ""})
    assert r.status == 403
    r = await api.get("/metrics", headers={"X-Api-Key": "wrong"})
    assert r.status == 403


async def _read_event(resp, timeout: float = 3.0) -> tuple[str, str]:
    """The next event (name, data) of an SSE stream, skipping comments."""
    name, data = "message", []
    async def read() -> tuple[str, str]:
        nonlocal name
        while True:
            line = (await resp.content.readline()).decode()
            if line in ("\n", ""):
                if data or name != "message":
                    return name, "\n".join(data)
                continue
            if line.startswith(":") or line.startswith("retry:"):
                continue
            field, _, value = line.rstrip("\n").partition(":")
            if field == "event":
                name = value.strip()
            elif field == "data":
                data.append(value.strip())
    return await asyncio.wait_for(read(), timeout)


async def test_events_after_a_write_coalesced(node_factory):
    client, node = await node_factory()
    for _ in range(100):  # the virtual printer's connecting is an event of its own: let it pass
        if node.printer.state.text == "Operational":
            break
        await asyncio.sleep(0.05)
    resp = await client.get(f"/lanqueue/events?apikey={API_KEY}", headers={"X-Api-Key": ""})
    assert resp.status == 200 and resp.content_type == "text/event-stream"
    assert await _read_event(resp) == ("hello", "{}")
    hub = client.app[web_module.LIVE]
    assert hub.open_streams == 1
    before = hub.events_sent
    # twenty writes in a burst arrive as at most a couple of events
    for i in range(20):
        r = await client.post(CP + "/set/add", data={"path": f"f{i}.gcode"})
        assert r.status == 200
    name, data = await _read_event(resp)
    assert name == "change" and "queues" in json.loads(data)["kinds"]
    await asyncio.sleep(0.6)
    assert hub.events_sent - before <= 3
    # the driver's status change (start managing) is an event too
    r = await client.post(CP + "/set_active", data={"active": "true"})
    assert r.status == 200
    seen: set[str] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 4
    while "driver" not in seen and loop.time() < deadline:
        name, data = await _read_event(resp, timeout=4)
        seen.update(json.loads(data)["kinds"])
    assert "driver" in seen
    resp.close()
    for _ in range(40):  # the hub notices the closed stream and lets go of the services
        if hub.open_streams == 0:
            break
        await asyncio.sleep(0.1)
    assert hub.open_streams == 0


async def test_open_stream_does_not_hold_up_shutdown(node_factory):
    client, _ = await node_factory()
    resp = await client.get(f"/lanqueue/events?apikey={API_KEY}")
    assert await _read_event(resp) == ("hello", "{}")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.wait_for(client.close(), 10)
    assert loop.time() - t0 < 5


METRIC_LINE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? -?[0-9.eE+-]+|NaN$')


def parse_metrics(text: str) -> dict[str, float]:
    out = {}
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge"), line
            types[name] = kind
        elif line.startswith("#") or not line:
            continue
        else:
            assert METRIC_LINE.match(line), line
            key, value = line.rsplit(" ", 1)
            assert key.split("{")[0] in types, f"sample before its TYPE: {line}"
            out[key] = float(value)
    return out


async def test_metrics_format_and_values(node_factory):
    client, node = await node_factory()
    await client.post(CP + "/set/add", data={"path": "a.gcode", "jobDraft": "false"})
    await client.post(CP + "/set/add", data={"path": "b.gcode"})  # a draft
    run = await node.store.begin_run("local", 1, "a", 1, "a.gcode")
    await node.store.end_run(run, "success")
    run = await node.store.begin_run("local", 1, "a", 1, "a.gcode")
    await node.store.end_run(run, "failure")
    await node.store.begin_run("local", 1, "a", 1, "a.gcode")  # still running: not counted
    r = await client.get("/metrics")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await r.text()
    assert text.endswith("\n")
    m = parse_metrics(text)
    assert m['lanqueue_prints_total{result="success"}'] == 1
    assert m['lanqueue_prints_total{result="failure"}'] == 1
    assert m['lanqueue_queue_jobs{queue="local"}'] == 2
    assert m['lanqueue_queue_jobs_pending{queue="local"}'] == 1
    assert m["lanqueue_driver_active"] == 0
    states = {k: v for k, v in m.items() if k.startswith("lanqueue_printer_state{")}
    assert sum(states.values()) == 1 and len(states) >= 5
    assert sum(v for k, v in m.items() if k.startswith("lanqueue_driver_status{")) == 1
    assert m["lanqueue_web_streams_open"] == 0 and "lanqueue_web_events_total" in m
    # LAN counters show up once a LAN service exposes them
    class FakeLan:
        counters: ClassVar[dict[str, int]] = {"grants": 3, "conflicts": 1}

        def has_queue(self, name):
            return False

    real_lan, node.lan = node.lan, FakeLan()
    try:
        m = parse_metrics(await (await client.get("/metrics")).text())
    finally:
        node.lan = real_lan
    assert m['lanqueue_lan_events_total{event="grants"}'] == 3
    assert m['lanqueue_lan_events_total{event="conflicts"}'] == 1


async def test_metrics_count_resends_of_a_print_with_corrupted_lines(node_factory):
    """Issue 7 lists resends among the metrics: a print over a link that corrupts lines shows them."""
    import asyncio

    import aiohttp

    from lanqueue.printer.virtual import Faults

    client, node = await node_factory()
    for _ in range(200):
        if node.printer.state.name == "OPERATIONAL":
            break
        await asyncio.sleep(0.05)
    m = parse_metrics(await (await client.get("/metrics")).text())
    assert m["lanqueue_printer_resends_total"] == 0
    model = node.printer.virtual.model
    model.faults = Faults(seed=5, corrupt_rate=0.2)
    body = ("\n".join(f"G1 X{i % 50} Y{i % 40} F6000" for i in range(200)) + "\n").encode()
    form = aiohttp.FormData()
    form.add_field("file", body, filename="c.gcode")
    assert (await client.post("/api/files/local", data=form)).status == 201
    r = await client.post("/api/files/local/c.gcode", json={"command": "select", "print": True})
    assert r.status == 204
    for _ in range(400):
        m = parse_metrics(await (await client.get("/metrics")).text())
        if m["lanqueue_printer_resends_total"] > 0:
            break
        await asyncio.sleep(0.05)
    assert m["lanqueue_printer_resends_total"] > 0
