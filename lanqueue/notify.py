"""Notifications: a printer needs a person, a print failed, the queue ran dry.

A farm's operator is rarely looking at the page. The node tells them through MQTT, with Home
Assistant's discovery messages so the printer shows up there as a device (a "needs a person"
problem sensor, a status sensor and an event entity), and through webhooks (a JSON POST, signed
with HMAC-SHA256 when a secret is set, to chat bots, ntfy, n8n and the like).

`NoticeCore` is pure: fed snapshots of the driver, it returns what to announce, once per
change (a person needed stays one notice until it is over; every failed print is one). The
asyncio side (`Notifier`) samples the driver, and each sink keeps its own bounded queue and
retries, so a broker or web server that is away delays notices instead of losing them (up to
MAX_PENDING each; older ones are dropped first and counted).

MQTT goes through aiomqtt: the maintained asyncio wrapper of paho-mqtt (Eclipse's reference
client), so the protocol (keep-alive, QoS 1 acknowledgements, the last will that marks the
printer offline when the node dies, TLS) is paho's well-tried code, not ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp

__all__ = ["EVENTS", "Broker", "MqttSink", "Notice", "NoticeCore", "Notifier", "Snapshot", "WebhookSink",
           "parse_broker", "sign"]

log = logging.getLogger(__name__)

EVENTS = ("needs_person", "print_failed", "queue_empty")
MAX_PENDING = 200
TOPIC_ROOT = "lanqueue"
DISCOVERY_PREFIX = "homeassistant"


@dataclass(frozen=True)
class Snapshot:
    """What the notifications look at in the driver (runner.Driver)."""

    status: str
    status_type: str  # NORMAL | NEEDS_ACTION | ERROR | INIT
    failed_prints: int
    last_failure: str
    ran_dry: int

    @property
    def needs_person(self) -> bool:
        return self.status_type in ("NEEDS_ACTION", "ERROR")


@dataclass(frozen=True)
class Notice:
    event: str  # one of EVENTS
    message: str
    status: str
    time: float


@dataclass
class NoticeCore:
    """Snapshots in, notices out; the first snapshot only sets the baseline."""

    last: Snapshot | None = None

    def observe(self, snap: Snapshot, now: float) -> list[Notice]:
        prev, self.last = self.last, snap
        if prev is None:
            return []
        out = []
        if snap.failed_prints > prev.failed_prints:
            out.append(Notice("print_failed", f"print failed: {snap.last_failure}", snap.status, now))
        if snap.needs_person and not prev.needs_person:
            out.append(Notice("needs_person", snap.status, snap.status, now))
        if snap.ran_dry > prev.ran_dry:
            out.append(Notice("queue_empty", "the queue ran dry: nothing left to print here", snap.status, now))
        return out


# --- sinks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    tls: bool


def parse_broker(url: str) -> Broker:
    """`mqtt://host[:1883]` or `mqtts://host[:8883]`; ValueError says what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"an MQTT broker is given as mqtt://HOST[:PORT] or mqtts://HOST[:PORT], not {url!r}")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ValueError(f"bad port in the MQTT broker URL {url!r}") from None
    return Broker(unquote(parts.hostname), port, tls)


class _Sink:
    """A bounded queue of notices and one task that delivers them in order, retrying."""

    name = "sink"

    def __init__(self) -> None:
        self.pending: deque[Notice] = deque()
        self.dropped = 0
        self.delivered = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def put(self, notice: Notice) -> None:
        if len(self.pending) >= MAX_PENDING:
            self.pending.popleft()
            self.dropped += 1
        self.pending.append(notice)
        self._wake.set()

    async def async_start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"notify-{self.name}")

    async def async_close(self) -> None:
        await _cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        raise NotImplementedError


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class WebhookSink(_Sink):
    """POST each notice as JSON to `url`; a failure is retried with backoff (1 s up to 60 s)."""

    name = "webhook"

    def __init__(self, url: str, secret: str | None, node: dict[str, str]) -> None:
        super().__init__()
        self.url = url
        self.secret = secret
        self.node = node

    def body(self, notice: Notice) -> bytes:
        return json.dumps({"event": notice.event, "message": notice.message, "status": notice.status,
                           "time": notice.time, **self.node}).encode()

    async def _run(self) -> None:
        delay = 1.0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            while True:
                if not self.pending:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                body = self.body(self.pending[0])
                headers = {"Content-Type": "application/json", "User-Agent": "lanqueue"}
                if self.secret:
                    headers["X-Lanqueue-Signature"] = sign(self.secret, body)
                try:
                    async with session.post(self.url, data=body, headers=headers) as resp:
                        if resp.status >= 500 or resp.status == 429:
                            raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
                        if resp.status >= 400:  # the receiver refuses it: retrying will not help
                            log.warning("webhook %s refused a notice: HTTP %d", self.url, resp.status)
                    self.pending.popleft()
                    self.delivered += 1
                    delay = 1.0
                except (aiohttp.ClientError, TimeoutError) as e:
                    log.info("webhook %s: %s; retrying in %.0f s", self.url, e, delay)
                    await asyncio.sleep(delay)
                    delay = min(60.0, delay * 2)


def sign(secret: str, body: bytes) -> str:
    """The X-Lanqueue-Signature header: `sha256=` and the HMAC of the body, as GitHub's."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class MqttSink(_Sink):
    """Publishes the printer's state and notices, and Home Assistant discovery, reconnecting."""

    name = "mqtt"

    def __init__(self, broker: Broker, node_id: str, node_name: str, profile: str, *,
                 user: str | None = None, password: str | None = None, cafile: str | None = None,
                 snapshot: Callable[[], Snapshot | None] = lambda: None) -> None:
        super().__init__()
        self.broker = broker
        self.node_id, self.node_name, self.profile = node_id, node_name, profile
        self.user, self.password, self.cafile = user, password, cafile
        self.snapshot = snapshot
        self.base = f"{TOPIC_ROOT}/{node_id}"
        self.connected = False
        self._state: tuple[str, bool] | None = None

    def discovery(self) -> dict[str, dict[str, Any]]:
        """Home Assistant MQTT discovery: topic -> config (published retained)."""
        uid = f"lanqueue_{self.node_id.replace('-', '')}"
        device = {"identifiers": [uid], "name": self.node_name, "manufacturer": "lanqueue", "model": self.profile}
        common = {"availability_topic": f"{self.base}/availability", "device": device}
        return {
            f"{DISCOVERY_PREFIX}/binary_sensor/{uid}/needs_person/config": {
                **common, "name": "Needs a person", "unique_id": f"{uid}_needs_person", "device_class": "problem",
                "state_topic": f"{self.base}/needs_person", "payload_on": "ON", "payload_off": "OFF"},
            f"{DISCOVERY_PREFIX}/sensor/{uid}/status/config": {
                **common, "name": "Status", "unique_id": f"{uid}_status", "state_topic": f"{self.base}/status"},
            f"{DISCOVERY_PREFIX}/event/{uid}/notice/config": {
                **common, "name": "Notice", "unique_id": f"{uid}_notice", "state_topic": f"{self.base}/event",
                "event_types": list(EVENTS)},
        }

    def state_changed(self) -> None:
        """The driver's status moved: publish it (not a notice; only the latest matters)."""
        self._wake.set()

    def _tls(self) -> ssl.SSLContext | None:
        if not self.broker.tls:
            return None
        return ssl.create_default_context(cafile=self.cafile)

    async def _run(self) -> None:
        import aiomqtt

        delay = 1.0
        while True:
            try:
                will = aiomqtt.Will(f"{self.base}/availability", "offline", qos=1, retain=True)
                async with aiomqtt.Client(self.broker.host, self.broker.port, username=self.user,
                                          password=self.password, identifier=f"lanqueue-{self.node_id}",
                                          will=will, tls_context=self._tls(), timeout=10) as client:
                    self.connected, delay, self._state = True, 1.0, None
                    for topic, config in self.discovery().items():
                        await client.publish(topic, json.dumps(config), qos=1, retain=True)
                    await client.publish(f"{self.base}/availability", "online", qos=1, retain=True)
                    try:
                        await self._serve(client)
                    except asyncio.CancelledError:  # a clean stop sends no last will: say it
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(client.publish(
                                f"{self.base}/availability", "offline", qos=1, retain=True), 2)
                        raise
            except aiomqtt.MqttError as e:
                log.info("MQTT broker %s:%d: %s; again in %.0f s", self.broker.host, self.broker.port, e, delay)
            finally:
                self.connected = False
            await asyncio.sleep(delay)
            delay = min(60.0, delay * 2)

    async def _serve(self, client: Any) -> None:
        while True:
            snap = self.snapshot()
            if snap is not None and (snap.status, snap.needs_person) != self._state:
                await client.publish(f"{self.base}/status", snap.status, qos=1, retain=True)
                await client.publish(f"{self.base}/needs_person", "ON" if snap.needs_person else "OFF",
                                     qos=1, retain=True)
                self._state = (snap.status, snap.needs_person)
            while self.pending:
                n = self.pending[0]
                await client.publish(f"{self.base}/event", json.dumps(
                    {"event_type": n.event, "message": n.message, "status": n.status, "time": n.time}), qos=1)
                self.pending.popleft()
                self.delivered += 1
            self._wake.clear()
            await self._wake.wait()


# --- the adapter ---------------------------------------------------------------------------


@dataclass
class Notifier:
    """Samples the driver (every `every` seconds) and hands notices to every sink."""

    snapshot: Callable[[], Snapshot | None]
    sinks: list[_Sink] = field(default_factory=list)
    every: float = 0.5
    core: NoticeCore = field(default_factory=NoticeCore)
    _task: asyncio.Task[None] | None = None

    async def async_start(self) -> None:
        for sink in self.sinks:
            await sink.async_start()
        self._task = asyncio.create_task(self._run(), name="notifier")

    async def async_close(self) -> None:
        await _cancel(self._task)
        self._task = None
        for sink in self.sinks:
            await sink.async_close()

    def check(self) -> None:
        snap = self.snapshot()
        if snap is None:
            return
        changed = snap != self.core.last
        for notice in self.core.observe(snap, time.time()):
            log.info("notice %s: %s", notice.event, notice.message)
            for sink in self.sinks:
                sink.put(notice)
        if changed:
            for sink in self.sinks:
                if isinstance(sink, MqttSink):
                    sink.state_changed()

    async def _run(self) -> None:
        while True:
            self.check()
            await asyncio.sleep(self.every)


def driver_snapshot(driver: Any) -> Snapshot:
    """A runner.Driver as notifications see it (duck-typed: notify imports no driver)."""
    return Snapshot(driver.status, driver.status_type, driver.failed_prints, driver.last_failure, driver.ran_dry)
