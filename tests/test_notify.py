"""Notifications: the pure core, webhooks to a real aiohttp server on loopback, and a real node
talking to Debian's mosquitto (started by the test) with Home Assistant discovery."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from conftest import CP
from mosquitto import mosquitto_unavailable, start_mosquitto

from lanqueue import runner as r
from lanqueue.config import ConfigError, resolve_options
from lanqueue.notify import (
    Notice,
    NoticeCore,
    Notifier,
    Snapshot,
    WebhookSink,
    driver_snapshot,
    sign,
)

SAMPLES = Path(__file__).resolve().parent.parent / "lanqueue" / "samples"


def snap(status: str = "Idle", kind: str = "NORMAL", failed: int = 0, dry: int = 0, why: str = "") -> Snapshot:
    return Snapshot(status, kind, failed, why, dry)


def test_core_announces_each_change_once() -> None:
    core = NoticeCore()
    assert core.observe(snap(kind="NEEDS_ACTION"), 0) == []  # the baseline: nothing to compare with
    assert core.observe(snap(), 1) == []
    out = core.observe(snap("Waiting for a person", "NEEDS_ACTION"), 2)
    assert [n.event for n in out] == ["needs_person"] and out[0].message == "Waiting for a person"
    assert core.observe(snap("Waiting for a person", "NEEDS_ACTION"), 3) == []  # still the same need
    out = core.observe(snap("Stopped: x", "ERROR", failed=2, why="thermal runaway"), 4)
    assert [n.event for n in out] == ["print_failed"]  # needs a person already announced
    assert "thermal runaway" in out[0].message
    assert [n.event for n in core.observe(snap(failed=2, dry=1), 5)] == ["queue_empty"]


class Receiver:
    """A real HTTP server on loopback that records webhook posts; the first `fail` answer 500."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.posts: list[tuple[dict, str]] = []
        self.raw: list[bytes] = []
        self.got = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.fail > 0:
            self.fail -= 1
            return web.Response(status=500)
        self.raw.append(body)
        self.posts.append((json.loads(body), request.headers.get("X-Lanqueue-Signature", "")))
        self.got.set()
        return web.Response(status=204)

    async def start(self) -> tuple[str, web.AppRunner]:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}/hook", runner


async def wait_for(cond, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_failed_print_of_the_real_driver_reaches_a_webhook_signed_after_a_retry() -> None:
    receiver = Receiver(fail=1)  # the first delivery fails: the notice must not be lost
    url, server = await receiver.start()
    driver = r.Driver()
    for event in (r.PrinterReady(), r.Activate(), r.ScriptsDone(r.EV_ACTIVATE)):
        driver.handle(event)
    job = r.JobRef("local", 1, "part", 1, "part.gcode")
    driver.handle(r.JobFound(job))
    driver.handle(r.ScriptsDone(r.EV_START))
    sink = WebhookSink(url, "s3cret", {"node": "printer-1"})
    notifier = Notifier(lambda: driver_snapshot(driver), [sink], every=0.02)
    await notifier.async_start()
    try:
        await asyncio.sleep(0.1)
        driver.handle(r.PrintFailed("thermal runaway"))
        await asyncio.wait_for(receiver.got.wait(), 10)
    finally:
        await notifier.async_close()
        await server.cleanup()
    body, signature = receiver.posts[0]
    assert body["event"] == "print_failed" and "thermal runaway" in body["message"] and body["node"] == "printer-1"
    assert signature == sign("s3cret", receiver.raw[0])
    assert sink.delivered == 1 and not sink.pending


def test_sink_queue_is_bounded() -> None:
    sink = WebhookSink("http://127.0.0.1:9/", None, {})
    for i in range(250):
        sink.put(Notice("queue_empty", str(i), "", 0.0))
    assert len(sink.pending) == 200 and sink.dropped == 50 and sink.pending[0].message == "50"


async def _upload_and_queue(client, name: str) -> None:
    data = aiohttp.FormData()
    data.add_field("file", (SAMPLES / name).read_bytes(), filename=name, content_type="application/octet-stream")
    assert (await client.post("/api/files/local", data=data)).status == 201
    r_ = await client.post(f"{CP}/set/add", data={"path": name, "jobDraft": "false", "count": "1"})
    assert r_.status == 200, await r_.text()


async def test_node_notifies_mqtt_with_home_assistant_discovery_and_a_webhook(node_factory, tmp_path) -> None:
    why = mosquitto_unavailable()
    if why:
        pytest.skip(why)
    import aiomqtt

    broker = start_mosquitto(tmp_path / "broker")
    receiver = Receiver()
    url, server = await receiver.start()
    messages: list[tuple[str, bytes, bool]] = []
    try:
        async with aiomqtt.Client(broker.host, broker.port) as sub:
            await sub.subscribe("homeassistant/#", qos=1)
            await sub.subscribe("lanqueue/#", qos=1)

            async def collect() -> None:
                async for m in sub.messages:
                    messages.append((str(m.topic), bytes(m.payload), bool(m.retain)))

            collector = asyncio.create_task(collect())
            try:
                client, node = await node_factory(mqtt=f"mqtt://{broker.host}:{broker.port}", webhook=(url,))
                await _upload_and_queue(client, "cura.gcode")
                assert (await client.post(f"{CP}/set_active", data={"active": "true"})).status == 200
                # the print ends, and the default bed clearing waits for a person
                await wait_for(lambda: any(p["event"] == "needs_person" for p, _ in receiver.posts))
                base = f"lanqueue/{node.node_id}"
                await wait_for(lambda: (f"{base}/needs_person", b"ON", False) in messages)
                assert (await client.post(f"{CP}/runner/continue")).status == 200
                await wait_for(lambda: any(p["event"] == "queue_empty" for p, _ in receiver.posts))
                await wait_for(lambda: any(t == f"{base}/event" and json.loads(p)["event_type"] == "queue_empty"
                                           for t, p, _ in messages))
                await wait_for(lambda: (f"{base}/needs_person", b"OFF", False) in messages)
                await client.close()  # a node that stops says so: offline, retained
                await wait_for(lambda: (f"{base}/availability", b"offline", False) in messages)
            finally:
                collector.cancel()
    finally:
        await server.cleanup()
        broker.close()
    configs = {t: json.loads(p) for t, p, _ in messages if t.startswith("homeassistant/") and t.endswith("/config")}
    kinds = sorted(t.split("/")[1] for t in configs)
    assert kinds == ["binary_sensor", "event", "sensor"], configs
    event_cfg = next(c for t, c in configs.items() if t.split("/")[1] == "event")
    assert event_cfg["event_types"] == ["needs_person", "print_failed", "queue_empty"]
    assert event_cfg["state_topic"] == f"lanqueue/{node.node_id}/event"
    assert all(c["device"]["name"] == "test-node" for c in configs.values())
    assert (f"lanqueue/{node.node_id}/availability", b"online", False) in messages
    needs = next(json.loads(p) for t, p, _ in messages
                 if t == f"lanqueue/{node.node_id}/event" and json.loads(p)["event_type"] == "needs_person")
    assert "clear the bed" in needs["message"]



async def test_mqtts_with_a_login_and_a_private_ca(node_factory, tmp_path) -> None:
    """mqtts:// to a broker that wants a user and password, trusting the broker's own CA."""
    why = mosquitto_unavailable(tls=True)
    if why:
        pytest.skip(why)
    import aiomqtt

    users = {"farm": "pa55word-farm", "watcher": "pa55word-watch"}
    broker = start_mosquitto(tmp_path / "broker", tls=True, users=users)
    try:
        _, node = await node_factory(mqtt=f"mqtts://{broker.host}:{broker.port}", mqtt_user="farm",
                                          mqtt_password=users["farm"], mqtt_ca=str(broker.cafile))
        ctx = ssl.create_default_context(cafile=str(broker.cafile))
        async with aiomqtt.Client(broker.host, broker.port, username="watcher", password=users["watcher"],
                                  tls_context=ctx) as sub:
            await sub.subscribe(f"lanqueue/{node.node_id}/availability", qos=1)
            got = await asyncio.wait_for(anext(aiter(sub.messages)), 15)
            assert got.payload == b"online"  # retained: the node logged in over TLS and said so
    finally:
        broker.close()


@pytest.mark.parametrize(("env", "says"), [
    ({"LANQUEUE_MQTT": "tcp://broker"}, "mqtt://HOST"),
    ({"LANQUEUE_MQTT": "mqtt://broker:notaport"}, "bad port"),
    ({"LANQUEUE_WEBHOOK": "ftp://x"}, "http:// or https://"),
])
def test_bad_notification_options_are_refused_at_start(env, says) -> None:
    with pytest.raises(ConfigError, match=says):
        resolve_options(None, env=env)


async def test_a_print_that_fails_on_the_printer_is_announced(node_factory, tmp_path) -> None:
    """The virtual printer on a real pty halts with a thermal runaway mid-print: the webhook
    hears print_failed (with the firmware's reason) and that the printer needs a person."""
    import subprocess
    import sys

    printer = subprocess.Popen([sys.executable, "-m", "lanqueue.cli", "virtual-printer", "--speed", "500",  # noqa: ASYNC220
                                "--thermal-runaway-after", "60"], stdout=subprocess.PIPE, text=True)
    receiver = Receiver()
    url, server = await receiver.start()
    try:
        pty = await asyncio.get_running_loop().run_in_executor(None, printer.stdout.readline)  # type: ignore[union-attr]
        client, _ = await node_factory(printer=pty.strip(), webhook=(url,))
        await _upload_and_queue(client, "prusaslicer.gcode")
        deadline = time.monotonic() + 20
        while (await (await client.get("/api/job")).json())["state"] != "Operational":
            assert time.monotonic() < deadline, "printer not operational"
            await asyncio.sleep(0.1)
        assert (await client.post(f"{CP}/set_active", data={"active": "true"})).status == 200
        await wait_for(lambda: {"print_failed", "needs_person"} <= {p["event"] for p, _ in receiver.posts})
    finally:
        await server.cleanup()
        printer.terminate()
        printer.wait(10)
    failed = next(p for p, _ in receiver.posts if p["event"] == "print_failed")
    assert "runaway" in failed["message"].lower(), failed
